"""Open-set identification through the HTTP API, with the service's default decision rule.

What a new user sees: a service started with default settings (or ``--url``), ``N`` people
enrolled through ``POST /identities/{identity}/faces`` with up to ``--templates`` photos
each, then ``POST /identify`` with their other photos (mated probes) and with every photo of
people never enrolled (strangers). Reported: the achieved FPIR (strangers named as someone)
against the service's target (``/health``), the FNIR (enrolled people not named, or named
wrongly), the threshold in force, how many faces enrolment refused for low quality and how
many probes were answered ``low_quality``. The same two rates are also given without the
public data's label errors (``training/data_fixes.json``, docs/MODEL.md): a stranger named as
a person the list says they are, or a photo whose largest face is someone else, is not
counted.

People come from folder-per-person datasets (``--data``, several allowed); with
``--split`` (a ``python -m training split`` file) only validation people are used, i.e.
people the shipped model never trained on.

    python -m bench.open_set --data ../shared/data/lfw/train ../shared/data/celeba \\
        --split runs/split.json --enrolled 1000 --templates 3
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    RESULTS,
    Service,
    live_service,
    load_split,
    machine_info,
    md_table,
    people_images,
    write_results,
)

DATA_FIXES = Path(__file__).resolve().parents[1] / "training" / "data_fixes.json"


def _post(service: Service, path: str, image: Path) -> tuple[int, dict[str, Any]]:
    import httpx

    with open(image, "rb") as fh:
        r = httpx.post(
            service.url + path,
            files={"image": (image.name, fh.read(), "application/octet-stream")},
            headers=service.headers,
            timeout=120.0,
        )
    return r.status_code, r.json()


def select_people(
    roots: list[Path], split: dict[str, set[str]] | None, enrolled: int, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """(enrolled people → photos, strangers → photos), people drawn at random."""
    people: dict[str, list[Path]] = {}
    for root in roots:
        for name, imgs in people_images(root).items():
            if split is None or name in split.get("val", set()):
                people[f"{root.name}:{name}"] = imgs
    names = sorted(people)
    order = np.random.default_rng(seed).permutation(len(names))
    n = min(enrolled, int(len(names) * 0.75))
    chosen = {names[i]: people[names[i]] for i in order[:n]}
    strangers = {names[i]: people[names[i]] for i in order[n:]}
    return chosen, strangers


def run(service: Service, enrolled: dict, strangers: dict, templates: int, workers: int) -> dict:
    """Enrol, then probe; every answer is kept as counts."""
    probes: list[tuple[str, Path, bool]] = []
    enrol_jobs: list[tuple[str, Path]] = []
    for name, imgs in enrolled.items():
        keep = min(templates, len(imgs) - 1) if len(imgs) > 1 else 1
        enrol_jobs += [(name, p) for p in imgs[:keep]]
        probes += [(name, p, True) for p in imgs[keep:]]
    probes += [(name, p, False) for name, imgs in strangers.items() for p in imgs]
    ids = {name: f"p{i}" for i, name in enumerate(sorted(enrolled))}
    names = {v: k for k, v in ids.items()}
    counts: dict[str, int] = {}
    lock = threading.Lock()
    t0 = time.monotonic()

    def enrol(job: tuple[str, Path]) -> None:
        status, body = _post(service, f"/identities/{ids[job[0]]}/faces", job[1])
        key = "enrolled" if status == 201 else body.get("error", {}).get("code", str(status))
        with lock:
            counts[key] = counts.get(key, 0) + 1

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(enrol, enrol_jobs))
    enrol_s = time.monotonic() - t0
    answers: list[dict[str, Any]] = []

    def probe(job: tuple[str, Path, bool]) -> None:
        person, photo, mated = job
        status, body = _post(service, "/identify", photo)
        faces = body.get("faces") if status == 200 else None
        face = faces[0] if faces else None
        got = face.get("identity") if face else None
        answers.append(
            {
                "mated": mated,
                "person": person.split(":")[-1],
                "photo": f"{photo.parent.name}/{photo.name}",
                "want": ids.get(person) if mated else None,
                "got": got,
                "got_person": names[got].split(":")[-1] if got in names else None,
                "reason": (face.get("reason") if face else "no_face"),
                "threshold": body.get("threshold", {}).get("value") if status == 200 else None,
            }
        )

    t1 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(probe, probes))
    mated = [a for a in answers if a["mated"]]
    strange = [a for a in answers if not a["mated"]]
    thresholds = sorted({round(a["threshold"], 4) for a in answers if a["threshold"] is not None})
    return {
        "enrolment": counts,
        "enrol_seconds": round(enrol_s, 1),
        "probe_seconds": round(time.monotonic() - t1, 1),
        "mated_probes": len(mated),
        "stranger_probes": len(strange),
        "fpir": float(np.mean([a["got"] is not None for a in strange])) if strange else None,
        "fnir": float(np.mean([a["got"] != a["want"] for a in mated])) if mated else None,
        "wrong_name": int(sum(a["got"] not in (None, a["want"]) for a in mated)),
        "low_quality_probes": int(sum(a["reason"] == "low_quality" for a in answers)),
        "no_face_probes": int(sum(a["reason"] == "no_face" for a in answers)),
        "thresholds_seen": thresholds,
        **without_label_errors(answers, json.loads(DATA_FIXES.read_text(encoding="utf-8"))),
    }


def without_label_errors(answers: list[dict[str, Any]], fixes: dict[str, Any]) -> dict[str, Any]:
    """FPIR and FNIR with the label errors of ``fixes`` (``training/data_fixes.json``) taken
    out: photos whose largest face is someone else are left out, and naming a person the
    list says is the same person as the probe's counts as a correct name, not an alarm."""
    alias = {k.split("/")[-1]: group[0] for group in fixes["same_person"] for k in group}
    wrong = {"/".join(p.split("/")[-2:]) for p in fixes["largest_face_is_someone_else"]}

    def same(a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and (a == b or alias.get(a, a) == alias.get(b, b))

    kept = [a for a in answers if a["photo"] not in wrong]
    strange = [a for a in kept if not a["mated"]]
    mated = [a for a in kept if a["mated"]]
    alarms = [a for a in strange if a["got"] is not None and not same(a["person"], a["got_person"])]
    hits = [a for a in mated if same(a["person"], a["got_person"])]
    return {
        "label_errors": {
            "photos_left_out": len(answers) - len(kept),
            "stranger_alarms_explained": int(
                sum(a["got"] is not None for a in answers if not a["mated"]) - len(alarms)
            ),
            "fpir": len(alarms) / len(strange) if strange else None,
            "fnir": 1.0 - len(hits) / len(mated) if mated else None,
        }
    }


def markdown(result: dict[str, Any]) -> str:
    r = result["result"]
    row = {
        "enrolled people": result["enrolled_people"],
        "templates (up to)": result["templates"],
        "target FPIR": result["target_fpir"],
        "threshold": ", ".join(str(t) for t in r["thresholds_seen"]),
        "FPIR": f"{r['fpir']:.4f}" if r["fpir"] is not None else "—",
        "FNIR": f"{r['fnir']:.4f}" if r["fnir"] is not None else "—",
        "strangers": r["stranger_probes"],
        "mated": r["mated_probes"],
    }
    return (
        f"### Open-set identification through the API\n\n`{result['command']}`\n\n"
        + md_table([row], list(row))
        + f"\n\nEnrolment: {json.dumps(r['enrolment'])}; probes answered low_quality: "
        f"{r['low_quality_probes']}, without a face: {r['no_face_probes']}.\n"
        + _label_error_line(r.get("label_errors"))
    )


def _label_error_line(fixed: dict[str, Any] | None) -> str:
    if not fixed or fixed["fpir"] is None or fixed["fnir"] is None:
        return ""
    return (
        f"\nWithout the label errors of training/data_fixes.json "
        f"({fixed['photos_left_out']} probe photos of someone else left out, "
        f"{fixed['stranger_alarms_explained']} strangers named as the person they are): "
        f"FPIR {fixed['fpir']:.4f}, FNIR {fixed['fnir']:.4f}.\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--split", type=Path, default=None, help="only validation people")
    ap.add_argument("--enrolled", type=int, default=1000)
    ap.add_argument("--templates", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4, help="requests in flight")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--url", default=None, help="a running service (empty gallery!)")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="8 people enrolled, few strangers")
    args = ap.parse_args(argv)
    roots = list(args.data)
    split = load_split(args.split)
    enrolled, strangers = select_people(roots, split, args.enrolled, args.seed)
    if args.quick:
        enrolled = dict(list(enrolled.items())[:8])
        strangers = dict(list(strangers.items())[:4])
    print(f"open-set: {len(enrolled)} enrolled, {len(strangers)} strangers", file=sys.stderr)
    with live_service(args.url, model_dir=args.model_dir) as service:
        target = (service.health.get("identification") or {}).get("target_fpir")
        result = run(service, enrolled, strangers, args.templates, args.workers)
    out = {
        "command": "python -m bench.open_set "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "enrolled_people": len(enrolled),
        "stranger_people": len(strangers),
        "templates": args.templates,
        "target_fpir": target,
        "result": result,
    }
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    write_results(out_dir, "open_set", out, markdown(out))
    print(json.dumps(result, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
