"""Drive faceid with the unmodified CompreFace Python SDK (``compreface-sdk==0.6.0``).

Run with the SDK's own venv (tests/clients/requirements-compreface.txt):

    python compreface_client.py DOMAIN PORT KEY PHOTOS_JSON

``PHOTOS_JSON`` maps roles (``al1``, ``al2``, ``andre1``, ``andre2``, ``amelia1``,
``amelia2``, ``stranger``, ``blank``) to file paths. Every SDK call's answer (the SDK
returns ``response.json()`` as is, errors included) is printed as one JSON object, step
name → answer, for tests/clients/test_compreface_sdk.py to check.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from compreface import CompreFace


def main(domain: str, port: str, key: str, photos: dict[str, str]) -> dict[str, Any]:
    options = {
        "limit": 0,
        "det_prob_threshold": 0.8,
        "prediction_count": 1,
        "face_plugins": "landmarks",
        "status": True,
    }
    compreface = CompreFace(domain, port, options)
    recognition = compreface.init_face_recognition(key)
    faces = recognition.get_face_collection()
    subjects = recognition.get_subjects()
    out: dict[str, Any] = {}

    out["add_al"] = faces.add(photos["al1"], "Al Gore")
    with open(photos["andre1"], "rb") as fh:  # bytes: the SDK uploads them as image.jpg
        out["add_andre"] = faces.add(fh.read(), "Andre Agassi")
    out["add_amelia"] = faces.add(photos["amelia1"], "Amelia Vega", {"det_prob_threshold": 0.5})
    out["add_blank"] = faces.add(photos["blank"], "Nobody")
    out["subjects_add"] = subjects.add("Zoe")
    out["faces_list"] = faces.list()
    out["subjects_list"] = subjects.list()

    out["recognize_al"] = recognition.recognize(photos["al2"])
    out["recognize_stranger"] = recognition.recognize(photos["stranger"], {"limit": 1})
    out["recognize_blank"] = recognition.recognize(photos["blank"])

    al_id = out["add_al"]["image_id"]
    out["verify_al"] = faces.verify(photos["al2"], al_id)
    out["verify_stranger"] = faces.verify(photos["stranger"], al_id)

    out["detect"] = compreface.init_face_detection(key).detect(photos["al2"])
    with open(photos["al2"], "rb") as fh:
        out["verification"] = compreface.init_face_verification(key).verify(
            photos["al1"], fh.read()
        )

    out["rename"] = subjects.update("Andre Agassi", "Andre")
    out["subjects_after_rename"] = subjects.list()
    out["recognize_andre"] = recognition.recognize(photos["andre2"])
    out["delete_subject"] = subjects.delete("Andre")
    out["subjects_after_delete"] = subjects.list()
    out["recognize_andre_after_delete"] = recognition.recognize(photos["andre2"])

    out["delete_all_amelia"] = faces.delete_all("Amelia Vega")
    out["recognize_amelia_after_delete"] = recognition.recognize(photos["amelia2"])
    out["delete_al"] = faces.delete(al_id)
    out["delete_al_again"] = faces.delete(al_id)
    out["recognize_al_after_delete"] = recognition.recognize(photos["al2"])
    out["faces_list_end"] = faces.list()
    out["subjects_delete_all"] = subjects.delete_all()
    return out


if __name__ == "__main__":
    domain, port, key, photos = sys.argv[1:5]
    print(json.dumps(main(domain, port, key, json.loads(photos))))
