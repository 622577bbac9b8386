"""Where the time of one ``POST /identify`` goes: ms per image for every stage.

In this process, for each photo (the same LFW photos and CelebA scenes as ``bench.load``),
the stages of ``/identify`` run one after another, each timed (wall and process CPU time):

- ``decode`` (``decode_image``), ``detect`` with MTCNN's stages inside it — P-Net per
  pyramid level (``pnet.resize``, ``pnet.net`` per level), its box generation and NMS,
  R-Net and O-Net (patch cropping, network, boxes, NMS) — then ``align``, ``model`` (the
  embedding engine on this photo's faces), ``gallery search`` (top-5 in a gallery of
  ``--enroll`` people) and ``json`` (the response model built and serialised);
- ``batching wait``: the same faces sent one photo at a time through the service's
  ``MicroBatcher`` (``FACEID_BATCH_MAX_WAIT_MS``), wired as the service wires it (it waits
  for companions only while another upload is being detected: never, with one client),
  its time minus the model call's;
- ``HTTP + multipart + rest``: the live service (``python -m app``) is sent the same photos
  one at a time; its median latency minus the sum of the stages above (loopback HTTP,
  multipart parsing, routing, thread hand-offs);
- a loaded service: 4 clients for ``--seconds``, the server's CPU seconds per image.

``--detector reference`` profiles mtcnn 1.0.0's own code path (its functions are wrapped
for the timing), ``lite`` (default) the TensorFlow Lite path.

    python -m bench.profile                       # 100 photos per set
    python -m bench.profile --detector reference  # the "before" profile
    python -m bench.profile --detector reference --url http://127.0.0.1:8001  # an older build
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    DEFAULT_DATA,
    RESULTS,
    live_service,
    machine_info,
    machine_line,
    md_table,
    write_results,
)
from bench.load import choose_photos, drive, enroll


@contextlib.contextmanager
def reference_timers(detector: Any) -> Iterator[Callable[[], None]]:
    """Wrap mtcnn 1.0.0's stage functions so that they report to ``faces.timing``.

    Yields a function that restarts the P-Net level count (call it before each photo).
    """
    import mtcnn.stages.stage_onet as so
    import mtcnn.stages.stage_pnet as sp
    import mtcnn.stages.stage_rnet as sr

    from faces.timing import stage

    patched: list[tuple[Any, str, Any]] = []
    level = [0]

    def wrap(obj: Any, attr: str, name: str | Callable[[], str]) -> None:
        original = getattr(obj, attr)

        def timed(*a: Any, **k: Any) -> Any:
            with stage(name() if callable(name) else name):
                return original(*a, **k)

        patched.append((obj, attr, original))
        setattr(obj, attr, timed)

    def pnet_level() -> str:
        level[0] += 1
        return f"detect.pnet.net.level{level[0] - 1}"

    pnet, rnet, onet = detector._mtcnn.stages
    wrap(sp, "apply_scales", "detect.pnet.resize.all_levels")
    wrap(pnet, "_model", pnet_level)
    wrap(sp, "generate_bounding_box", "detect.pnet.boxes")
    wrap(sp, "upscale_bboxes", "detect.pnet.boxes")
    wrap(sp, "smart_nms_from_bboxes", "detect.pnet.nms")
    for mod, net, tag in ((sr, rnet, "rnet"), (so, onet, "onet")):
        wrap(mod, "extract_patches", f"detect.{tag}.crop")
        wrap(net, "_model", f"detect.{tag}.net")
        wrap(mod, "smart_nms_from_bboxes", f"detect.{tag}.nms")
        for fn in ("replace_confidence", "adjust_bboxes", "pick_matches"):
            wrap(mod, fn, f"detect.{tag}.boxes")
    try:
        yield lambda: level.__setitem__(0, 0)
    finally:
        for obj, attr, original in reversed(patched):
            setattr(obj, attr, original)


def _stage_order(name: str) -> tuple[int, str]:
    order = ["decode", "detect", "align", "model", "gallery", "json", "batching", "http"]
    head = name.split(".")[0].split(" ")[0]
    return (order.index(head) if head in order else len(order), name)


def profile_set(
    paths: list[Path],
    pipeline: Any,
    model: Any,
    search: Callable[[np.ndarray, int], list[Any]],
    reset_levels: Callable[[], None],
) -> dict[str, Any]:
    """Per-stage mean wall and CPU ms per image over ``paths`` (after 3 untimed photos)."""
    from app.api.deps import face_fields
    from app.schemas import Candidate, IdentifiedFace, IdentifyResponse, ThresholdInfo
    from faces import AlignedFace
    from faces.align import ALIGNED_SIZE, align_face
    from faces.timing import recording, stage

    wall: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    faces_total = 0
    datas = [p.read_bytes() for p in paths]
    for i, data in enumerate([*datas[:3], *datas]):
        reset_levels()
        with recording() as rec:
            with stage("decode"):
                pixels = pipeline.decode(data).pixels
            with stage("detect"):
                detections = pipeline.detector.detect(pixels)[:20]
            with stage("align + quality"):
                faces = [
                    AlignedFace(detection=d, crop=align_face(pixels, d.landmarks, ALIGNED_SIZE)[0])
                    for d in detections
                ]
            if faces:
                with stage("model"):
                    emb = model.embed(np.stack([f.crop for f in faces]))
                with stage("gallery search"):
                    matches = search(emb, 5)
            else:
                matches = []
            with stage("json"):
                body = IdentifyResponse(
                    faces=[
                        IdentifiedFace(
                            **face_fields(f),  # type: ignore[arg-type]
                            identity=c[0][0] if c else None,
                            score=c[0][1] if c else None,
                            candidates=[Candidate(identity=n, score=s) for n, s in c],
                        )
                        for f, c in zip(faces, matches, strict=False)
                    ],
                    threshold=ThresholdInfo(
                        value=0.5, source="card", target_fpir=None, identities=1, faces=1
                    ),
                    model_version="x",
                ).model_dump_json()
                assert body
        if i < 3:
            continue
        faces_total += len(detections)
        for name, (w, c, _) in rec.items():
            wall[name] += w
            cpu[name] += c
    n = len(datas)
    return {
        "images": n,
        "faces_per_image": round(faces_total / n, 2),
        "wall_ms": {k: round(v / n * 1000, 3) for k, v in wall.items()},
        "cpu_ms": {k: round(v / n * 1000, 3) for k, v in cpu.items()},
    }


def batching_wait_ms(model: Any, crops_per_photo: list[np.ndarray], max_wait_ms: float) -> float:
    """Mean ms a photo's faces wait in the MicroBatcher beyond the model call (1 client)."""
    from app.inference.batcher import MicroBatcher

    async def run() -> float:
        model_seconds: list[float] = []  # each model call's time, from the observer
        batcher = MicroBatcher(
            model.embed,
            max_size=32,
            max_wait_ms=max_wait_ms,
            observer=lambda faces, requests, seconds: model_seconds.append(seconds),
            more_coming=lambda: False,  # one client: no other upload is being detected
        )
        batcher.start()
        waits = []
        try:
            for crops in crops_per_photo:
                t0 = time.perf_counter()
                await batcher.embed(crops)
                total = time.perf_counter() - t0
                waits.append(total - model_seconds[-1])
        finally:
            await batcher.stop()
        return float(np.mean(waits)) * 1000 if waits else 0.0

    return asyncio.run(run())


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"### Stage profile of POST /identify — detector `{result['detector']}`",
        "",
        f"Machine: {machine_line(result['machine'])}; load {result['load_after']} at end",
        f"Command: `{result['command']}`",
        f"Model engine: {result['engine']}; gallery: {result['gallery']}",
        "",
        "ms per image (mean); CPU = the process's CPU time, all threads (steadier than "
        "wall time on a shared machine); detection's sub-stages are indented.",
        "",
    ]
    sets = list(result["sets"])
    names = sorted({k for s in sets for k in result["sets"][s]["wall_ms"]}, key=_stage_order)
    rows = []
    for name in names:
        row: dict[str, Any] = {"stage": ("  ↳ " if name.startswith("detect.") else "") + name}
        for s in sets:
            row[f"{s} wall"] = result["sets"][s]["wall_ms"].get(name)
            row[f"{s} CPU"] = result["sets"][s]["cpu_ms"].get(name)
        rows.append(row)
    tail = {"batching wait": "batching_wait_ms", "HTTP + multipart + rest": "http_rest_ms"}
    for label, key in tail.items():
        row = {"stage": label}
        for s in sets:
            row[f"{s} wall"] = result["sets"][s].get(key)
        rows.append(row)
    for label, key in (
        ("end to end, 1 client (p50)", "http_p50_ms"),
        ("loaded (4 clients): server CPU ms per image", "loaded_cpu_ms_per_image"),
        ("loaded (4 clients): images/s", "loaded_images_per_s"),
    ):
        row = {"stage": label}
        for s in sets:
            row[f"{s} wall"] = result["sets"][s].get(key)
        rows.append(row)
    lines.append(md_table(rows, list(rows[0])))
    lines += ["", "Faces per image: " + ", ".join(
        f"{s} {result['sets'][s]['faces_per_image']}" for s in sets
    )]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--photos", type=int, default=100, help="photos per set")
    ap.add_argument("--enroll", type=int, default=50)
    ap.add_argument("--detector", choices=["lite", "reference"], default="lite")
    ap.add_argument("--seconds", type=float, default=20.0, help="loaded run per set")
    ap.add_argument("--no-http", action="store_true", help="skip the live-service part")
    ap.add_argument("--url", default=None, help="time this running service (empty gallery) instead")
    ap.add_argument("--quick", action="store_true", help="8 photos per set, 3 s loaded")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.photos, args.enroll, args.seconds = 8, 5, 3.0
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)

    from app.gallery.service import GalleryService
    from app.gallery.storage.sqlite import GalleryStore
    from app.inference.model import EmbeddingModel, load_card
    from app.recognition import MatchPolicy
    from app.settings import Settings
    from faces import FaceDetector, FacePipeline

    settings = Settings()
    chosen = choose_photos(args.data, args.photos, args.enroll)
    card = load_card(settings.model_dir)
    model = EmbeddingModel(settings.model_dir, card, engine=settings.engine)
    detector = FaceDetector(min_face_size=settings.min_face_size, backend=args.detector)
    pipeline = FacePipeline(detector, max_pixels=settings.max_pixels)
    result: dict[str, Any] = {
        "command": "python -m bench.profile "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "detector": args.detector,
        "engine": model.engine,
        "sets": {},
    }
    with tempfile.TemporaryDirectory(prefix="faceid-profile-") as tmp:
        store = GalleryStore(Path(tmp) / "g.sqlite3", card.model_id, card.embedding_dim)
        gallery = GalleryService.open(store, search_threads=settings.search_threads)
        for name, path in chosen["enrolled"].items():
            faces = pipeline.faces_in_file(str(path), max_faces=1)
            if faces:
                gallery.enroll(name, model.embed(faces[0].crop[None])[0])
        result["gallery"] = f"{gallery.identities} LFW people (1 photo each)"
        policy = MatchPolicy(card, settings)  # the service's scoring: centroid or best face

        def search(queries: np.ndarray, top_k: int) -> list[Any]:
            return policy.search(gallery.index, queries, top_k)

        timers = (
            reference_timers(detector)
            if args.detector == "reference"
            else contextlib.nullcontext(lambda: None)
        )
        with timers as reset_levels:
            for set_name, paths in chosen["sets"].items():
                print(f"profile: {set_name} ...", file=sys.stderr, flush=True)
                r = profile_set(paths, pipeline, model, search, reset_levels)
                crops = [
                    np.stack([f.crop for f in fs])
                    for fs in (pipeline.faces_in_file(str(p), max_faces=20) for p in paths[:30])
                    if fs
                ]
                r["batching_wait_ms"] = round(
                    batching_wait_ms(model, crops, settings.batch_max_wait_ms), 3
                )
                result["sets"][set_name] = r
        store.close()
    if not args.no_http:
        env = {"FACEID_DETECTOR": args.detector}
        with live_service(args.url, extra_env=env) as service:
            enroll(service, chosen["enrolled"])
            for set_name, paths in chosen["sets"].items():
                photos = [p.read_bytes() for p in paths]
                drive(service, photos, 2, 4, 60)  # warm-up
                one = drive(service, photos, 1, len(photos), 120)
                r = result["sets"][set_name]
                p50 = one["latency"]["p50_ms"]
                inside = sum(v for k, v in r["wall_ms"].items() if "." not in k)
                r["http_p50_ms"] = p50
                r["http_rest_ms"] = round(p50 - inside - r["batching_wait_ms"], 3)
                loaded = drive(service, photos, 4, 10**6, args.seconds)
                ips = loaded["images_per_s"] or 0
                r["loaded_images_per_s"] = ips
                busy = loaded["server_cores_busy"] or 0
                r["loaded_cpu_ms_per_image"] = round(busy / ips * 1000, 2) if ips else None
                r["loaded_server_cores_busy"] = busy
    result["load_after"] = round(os.getloadavg()[0], 2)
    write_results(out_dir, f"profile-{args.detector}", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
