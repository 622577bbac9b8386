"""The web page at ``/`` (issue 14) in headless Chromium against a live service with an API
key: enrol, identify, unknown strangers, erasure, errors in words, verify, paging, EXIF
rotation, the future per-face fields, phone width, and the collection picker (issue 23).
Each state is screenshotted."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from browserkit import CHROMIUM, CHROMIUM_ARGS, OUTPUT, LiveService, Session, in_collection
from faceid_testkit import DATA, blank_png, lfw
from PIL import Image, ImageOps

PERSON, NAME = "Al_Gore", "Al Gore"  # photos 1 and 2 enrolled, 3 identified
STRANGER = lfw("Alec_Baldwin")  # another folder, never enrolled


@pytest.fixture(autouse=True)
def _empty_gallery(live_service: LiveService) -> None:
    if not (DATA / "lfw").is_dir():
        pytest.skip(f"no datasets at {DATA}")
    live_service.clear_gallery()


def open_page(s: Session, view: str = "identify", key: str | None = None) -> Any:
    """Load ``/#view``; with ``key``, type it into the key field and save it."""
    page = s.page
    page.goto(f"{s.base}/#{view}")
    page.wait_for_selector("body[data-ready='true']")
    if key is not None:
        page.fill("#api-key", key)
        page.click("#key-save")
    return page


def identify_in_page(page: Any, photo: Path) -> None:
    page.goto(page.url.split("#")[0] + "#identify")
    view = page.locator("#view-identify")
    before = int(view.get_attribute("data-answers") or 0)
    page.set_input_files("#identify-file", str(photo))
    page.wait_for_selector(f"#view-identify[data-answers='{before + 1}']", state="attached")


def labels(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#identify-stage .face-label").all_inner_texts()]


def api_error_message(live: LiveService, path: Path) -> dict[str, str]:
    with live.client() as c:
        response = c.post("/identify", files={"image": (path.name, path.read_bytes())})
    assert response.status_code == 415, response.text
    return response.json()["error"]  # type: ignore[no-any-return]


def test_enrol_identify_stranger_erase_and_error_in_words(
    session: Session, live_service: LiveService, tmp_path: Path
) -> None:
    """Issue 14's scenario, screen by screen."""
    page = open_page(session, "identify")
    assert page.title() == "faceid"

    # Without the key the API refuses, and the page says so in words.
    identify_in_page(page, lfw(PERSON, 3))
    assert "Missing API key" in page.inner_text("#identify-message")
    assert "API key" in page.inner_text("#identify-message")
    session.shot("0-no-key")

    page.fill("#api-key", live_service.key)
    page.click("#key-save")
    assert page.evaluate("sessionStorage.getItem('faceid.apiKey')") == live_service.key

    # Enrol two photos of one person; each photo's outcome is listed.
    page.goto(f"{session.base}/#enrol")
    page.fill("#enrol-name", NAME)
    faceless = tmp_path / "wall.png"
    faceless.write_bytes(blank_png())
    page.set_input_files("#enrol-files", [str(lfw(PERSON, 1)), str(faceless), str(lfw(PERSON, 2))])
    page.click("#enrol-submit")
    page.wait_for_selector("#enrol-message.info")
    assert page.inner_text("#enrol-message") == f"2 of 3 photos enrolled for {NAME}."
    outcomes = page.locator("#enrol-outcomes .outcome .outcome-text").all_inner_texts()
    assert len(outcomes) == 3
    for i in (0, 2):
        assert re.fullmatch(rf"Enrolled as {NAME}, quality [01]\.\d\d", outcomes[i]), outcomes
    assert outcomes[1] == "No face found: nothing enrolled from this photo."
    page.wait_for_function(
        "() => document.getElementById('status-text').textContent.includes('1 person, 2 faces')"
    )
    session.shot("1-enrolled")

    # A third photo: the name is drawn on the face's box, with 5 landmarks and the score.
    identify_in_page(page, lfw(PERSON, 3))
    with live_service.client() as c:
        answer = c.post("/identify", files={"image": lfw(PERSON, 3).read_bytes()}).json()
    assert answer["faces"][0]["identity"] == NAME
    assert labels(page)[0] == f"1 {NAME} · {answer['faces'][0]['score']:.2f}"
    assert page.locator("#identify-stage .face-box.known").count() == 1
    assert page.locator("#identify-stage .landmark").count() == 5 * len(answer["faces"])
    first_card = page.locator("#identify-faces .face-card").first
    assert first_card.locator(".face-name").inner_text() == NAME
    assert NAME in page.locator("#identify-faces .candidates").first.inner_text()
    session.shot("2-identified", full_page=True)  # docs/img/web-identify.png

    # A stranger is "unknown".
    identify_in_page(page, STRANGER)
    assert labels(page) and labels(page)[0].startswith("1 unknown")
    assert page.locator("#identify-stage .face-box.known").count() == 0
    session.shot("3-stranger-unknown")

    # Erase the person from the gallery, with the confirm step.
    page.goto(f"{session.base}/#gallery")
    row = page.locator(f"#gallery-rows tr[data-identity='{NAME}']")
    assert row.locator("td.num").inner_text() == "2"
    row.get_by_role("button", name="Delete person").click()
    assert f"Delete {NAME} and all 2 faces?" in row.inner_text()
    session.shot("4-confirm-delete")
    with live_service.client() as c:  # nothing is deleted before the confirmation
        assert c.get(f"/identities/{NAME}").status_code == 200
    row.locator("button.confirm").click()
    page.wait_for_selector("#gallery-message.ok")
    assert page.inner_text("#gallery-message") == f"{NAME} was deleted."
    assert "Nobody is enrolled yet" in page.inner_text("#gallery-rows")
    session.shot("5-deleted")

    # The same third photo is unknown again.
    identify_in_page(page, lfw(PERSON, 3))
    assert labels(page)[0].startswith("1 unknown")
    session.shot("6-unknown-again")

    # A text file: the API's error message, in words, instead of a picture.
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo\n")
    error = api_error_message(live_service, notes)
    identify_in_page(page, notes)
    shown = page.inner_text("#identify-message")
    assert error["message"] in shown and "415" in shown
    assert page.locator("#identify-result").is_hidden()
    session.shot("7-text-file-error")

    assert session.recorder.foreign == []


def drop_file(page: Any, zone: str, path: Path) -> None:
    """Drop ``path`` onto ``zone`` as a person dragging it from a file manager would."""
    page.evaluate(
        """async ([zone, name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
            const target = document.querySelector(zone);
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true,
                                                           dataTransfer: transfer }));
            }
        }""",
        [zone, path.name, base64.b64encode(path.read_bytes()).decode()],
    )


def test_verify_two_photos(session: Session, live_service: LiveService) -> None:
    page = open_page(session, "verify", key=live_service.key)
    for a, b, verdict in [
        (lfw(PERSON, 1), lfw(PERSON, 2), "Same person"),
        (lfw(PERSON, 1), STRANGER, "Different people"),
    ]:
        with live_service.client() as c:
            files = {"image_a": a.read_bytes(), "image_b": b.read_bytes()}
            expected = c.post("/verify", files=files).json()
        page.set_input_files("#verify-a", str(a))
        drop_file(page, "#verify-drop-b", b)  # the second one dropped
        page.click("#verify-submit")
        page.wait_for_selector("#verify-result:not([hidden])")
        text = page.inner_text("#verify-result")
        assert verdict in text
        assert f"score {expected['score']:.3f}" in text
        assert f"threshold {expected['threshold']:.3f}" in text
        session.shot(verdict.lower().replace(" ", "-"))


def test_gallery_pages_and_deletes_one_face(session: Session, live_service: LiveService) -> None:
    names = [f"Person {i:02d}" for i in range(21)]
    photo = lfw(PERSON, 1).read_bytes()
    with live_service.client() as c:
        for name in names:
            assert c.post(f"/identities/{name}/faces", files={"image": photo}).status_code == 201
        assert c.post(f"/identities/{names[0]}/faces", files={"image": photo}).status_code == 201
    page = open_page(session, "gallery", key=live_service.key)
    page.wait_for_selector("#gallery-rows tr[data-identity]")
    assert page.locator("#gallery-rows tr[data-identity]").count() == 20
    assert page.inner_text("#gallery-range") == "1–20 of 21"
    first = page.locator(f"#gallery-rows tr[data-identity='{names[0]}']")
    assert first.locator("td.num").inner_text() == "2"
    session.shot("page-1")

    # One face of the first person: expand, delete, confirm.
    first.get_by_role("button", name=names[0]).click()
    faces = page.locator("#gallery-rows .faces-row li")
    faces.first.wait_for()
    assert faces.count() == 2
    faces.first.get_by_role("button", name="Delete face").click()
    page.locator("#gallery-rows .faces-row button.confirm").click()
    page.wait_for_selector("#gallery-message.ok")
    assert page.inner_text("#gallery-message") == f"One face of {names[0]} was deleted."
    assert first.locator("td.num").inner_text() == "1"
    with live_service.client() as c:
        assert len(c.get(f"/identities/{names[0]}").json()["faces"]) == 1

    page.click("#gallery-next")
    page.wait_for_function(
        "() => document.getElementById('gallery-range').textContent === '21–21 of 21'"
    )
    assert (
        page.locator("#gallery-rows tr[data-identity]").all_inner_texts()[0].startswith(names[-1])
    )
    assert page.is_disabled("#gallery-next") and not page.is_disabled("#gallery-prev")
    session.shot("page-2")


def rotated_large_jpeg(path: Path) -> tuple[bytes, Image.Image]:
    """A large, non-square photo stored sideways with EXIF orientation 6 ("rotate 90° CW to
    view"): what phones write. Returns the JPEG and the upright image a viewer should see."""
    upright = Image.open(path).convert("RGB").crop((25, 0, 225, 250))  # 200 × 250
    upright = upright.resize((1600, 2000), Image.Resampling.LANCZOS)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 2000 × 1600, face sideways
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    data = buffer.getvalue()
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == upright.size
    return data, upright


def mean_rgb(image: Image.Image, box: list[float]) -> list[float]:
    region = image.crop(tuple(round(v) for v in box)).resize((1, 1), Image.Resampling.BOX)
    return list(region.getpixel((0, 0)))  # type: ignore[arg-type]


def test_large_exif_rotated_photo_is_drawn_upright_under_its_boxes(
    session: Session, live_service: LiveService, tmp_path: Path
) -> None:
    data, upright = rotated_large_jpeg(lfw(PERSON, 1))
    photo = tmp_path / "sideways.jpg"
    photo.write_bytes(data)
    with live_service.client() as c:
        answer = c.post("/identify", files={"image": data}).json()
    assert len(answer["faces"]) == 1
    box = answer["faces"][0]["box"]

    page = open_page(session, "identify", key=live_service.key)
    identify_in_page(page, photo)
    canvas = page.locator("#identify-stage canvas.photo")
    # Drawn in the API's frame (upright 1600 × 2000, not the stored 2000 × 1600), scaled down.
    assert canvas.get_attribute("data-image-width") == "1600"
    assert canvas.get_attribute("data-image-height") == "2000"
    assert canvas.evaluate("c => [c.width, c.height]") == [768, 960]

    # The pixels under the face box are the face's: the box region of the canvas has the
    # colour of the same region of the upright photo, not of the photo as stored.
    drawn = page.evaluate(
        """([x1, y1, x2, y2]) => {
            const c = document.querySelector('canvas.photo');
            const s = c.width / Number(c.dataset.imageWidth);
            const w = Math.round((x2 - x1) * s), h = Math.round((y2 - y1) * s);
            const ctx = c.getContext('2d');
            const d = ctx.getImageData(Math.round(x1 * s), Math.round(y1 * s), w, h).data;
            const m = [0, 0, 0];
            for (let i = 0; i < d.length; i += 4) {
                m[0] += d[i]; m[1] += d[i + 1]; m[2] += d[i + 2];
            }
            return m.map((v) => v / (d.length / 4));
        }""",
        box,
    )
    right = mean_rgb(upright, box)
    wrong = mean_rgb(Image.open(io.BytesIO(data)).convert("RGB"), box)
    assert max(abs(a - b) for a, b in zip(drawn, right, strict=True)) < 6, (drawn, right)
    assert max(abs(a - b) for a, b in zip(right, wrong, strict=True)) > 15, "test photo too flat"

    # The box overlay sits on those pixels: its rectangle, relative to the canvas.
    rects = page.evaluate(
        """() => {
            const c = document.querySelector('canvas.photo').getBoundingClientRect();
            const b = document.querySelector('.face-box').getBoundingClientRect();
            return [c.width, (b.left - c.left) / c.width, (b.top - c.top) / c.height,
                    b.width / c.width, b.height / c.height];
        }"""
    )
    x1, y1, x2, y2 = box
    expected = [x1 / 1600, y1 / 2000, (x2 - x1) / 1600, (y2 - y1) / 2000]
    border = 2 / rects[0]  # the 2 px border of the box is drawn outside its content
    for got, want in zip(rects[1:], expected, strict=True):
        assert abs(got - want) < border + 0.01, (rects, expected)
    session.shot("exif-rotated")


def test_quality_reason_and_threshold_are_shown_and_their_absence_breaks_nothing(
    session: Session, live_service: LiveService
) -> None:
    """Per-face ``quality`` / ``reason`` and the answer's ``threshold`` are shown; an answer
    without them (an older service, simulated on the real answer) still renders, and a
    ``low_quality`` face (simulated: the shipped photos are all of good quality) is marked."""
    with live_service.client() as c:
        enrolled = c.post(f"/identities/{NAME}/faces", files={"image": lfw(PERSON, 1).read_bytes()})
        assert enrolled.status_code == 201, enrolled.text
        real = c.post("/identify", files={"image": lfw(PERSON, 2).read_bytes()}).json()
        health = c.get("/health").json()
    page = open_page(session, "identify", key=live_service.key)

    identify_in_page(page, lfw(PERSON, 2))
    face = real["faces"][0]
    card = page.locator("#identify-faces .face-card").first
    assert f"quality {face['quality']:.2f}" in card.inner_text()
    threshold = real["threshold"]
    summary = page.inner_text("#identify-summary")
    assert f"threshold {threshold['value']:.3f} ({threshold['source']})" in summary
    session.shot("quality-and-threshold")

    # The same answer as an older service gave it: no quality, reason or threshold.
    old = json.loads(json.dumps(real))
    del old["threshold"]
    for f in old["faces"]:
        f.pop("quality", None)
        f.pop("reason", None)
    # A photo whose face is under the quality floor: no name, reason low_quality.
    low = json.loads(json.dumps(real))
    for f in low["faces"]:
        f.update(identity=None, quality=0.12, reason="low_quality")
    answers = iter([old, low])

    def canned(route: Any) -> None:  # (a route cannot re-send the page's multipart upload)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(next(answers)))

    page.route("**/identify?*", canned)
    identify_in_page(page, lfw(PERSON, 2))
    card = page.locator("#identify-faces .face-card").first
    assert labels(page)[0].startswith(f"1 {NAME}")
    assert "quality" not in card.inner_text()
    in_force = health["identification"]["value"]  # from /health instead
    assert f"threshold {in_force:.3f}" in page.inner_text("#identify-summary")

    identify_in_page(page, lfw(PERSON, 2))
    card = page.locator("#identify-faces .face-card").first
    assert "quality 0.12" in card.inner_text() and "low quality" in card.inner_text()
    assert labels(page)[0].startswith("1 unknown (low quality)")
    assert page.locator("#identify-stage .face-box.flagged").count() == 1
    session.shot("low-quality")


def test_phone_width_and_many_faces(session: Session, live_service: LiveService) -> None:
    from faceid_testkit import MULTI_FACE_PHOTO

    page = session.page
    page.set_viewport_size({"width": 390, "height": 844})
    open_page(session, "identify", key=live_service.key)
    identify_in_page(page, MULTI_FACE_PHOTO)
    assert page.locator("#identify-stage .face-box").count() == 3
    assert page.locator("#identify-faces .face-card").count() == 3
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone"
    canvas_right = page.evaluate(
        "document.querySelector('canvas.photo').getBoundingClientRect().right"
    )
    assert canvas_right <= 390
    session.shot("phone", full_page=True)
    field = page.locator("#collection").bounding_box()  # the collection picker fits too
    assert field and field["x"] >= 0 and field["x"] + field["width"] <= 390, field
    for view in ("enrol", "gallery", "verify"):
        page.goto(f"{session.base}/#{view}")
        page.wait_for_selector(f"#view-{view}:not([hidden])")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (view, overflow)
        session.shot(f"phone-{view}", full_page=True)


FAMILY = "family"


def choose_collection(page: Any, name: str) -> None:
    """Type ``name`` into the Collection field and press Enter."""
    page.fill("#collection", name)
    page.press("#collection", "Enter")


def status_shows(page: Any, text: str) -> None:
    page.wait_for_function(
        "t => document.getElementById('status-text').textContent.includes(t)", arg=text
    )


def test_collection_picker_enrol_identify_and_gallery_per_collection(
    session: Session, live_service: LiveService
) -> None:
    """Issue 23: a person enrolled into ``family`` through the page is named there, unknown
    in ``default``, and listed only in ``family``'s gallery; the field offers ``family``,
    survives a reload and refuses a bad name in words."""
    page = open_page(session, "enrol", key=live_service.key)
    assert page.input_value("#collection") == "default"
    status_shows(page, "collection default: 0 people, 0 faces")

    # A new name: the page says the collection is created by its first enrolment.
    choose_collection(page, FAMILY)
    assert page.evaluate("sessionStorage.getItem('faceid.collection')") == FAMILY
    hint = page.inner_text("#enrol-collection")
    assert f"Enrolling into the collection {FAMILY}." in hint
    assert "new collection" in hint and "created with its first face" in hint
    status_shows(page, f"collection {FAMILY}: no faces yet")
    session.shot("0-new-collection")

    page.fill("#enrol-name", NAME)
    page.set_input_files("#enrol-files", [str(lfw(PERSON, 1)), str(lfw(PERSON, 2))])
    page.click("#enrol-submit")
    page.wait_for_selector("#enrol-message.ok")
    assert page.inner_text("#enrol-message") == (
        f"2 of 2 photos enrolled for {NAME} in the collection {FAMILY}."
    )
    status_shows(page, f"collection {FAMILY}: 1 person, 2 faces")
    with live_service.client() as c:
        assert c.get(f"{in_collection(FAMILY)}/identities").json()["total"] == 1
        assert c.get("/identities").json()["total"] == 0
        listed = {x["name"]: x for x in c.get("/collections").json()["collections"]}
        family_probe = c.post(
            f"{in_collection(FAMILY)}/identify", files={"image": lfw(PERSON, 3).read_bytes()}
        ).json()
    threshold = listed[FAMILY]["identification"]
    status_shows(page, f"identify threshold {threshold['value']:.3f} ({threshold['source']})")
    # The datalist offers the new collection (filled from GET /collections).
    page.wait_for_function(
        "n => [...document.querySelectorAll('#collection-options option')]"
        ".some(o => o.value === n)",
        arg=FAMILY,
    )
    options = page.eval_on_selector_all("#collection-options option", "os => os.map(o => o.value)")
    assert set(options) == {"default", FAMILY}, options
    session.shot("1-enrolled-in-family")

    # Identify in family: named, with family's threshold; in default: unknown.
    identify_in_page(page, lfw(PERSON, 3))
    face = family_probe["faces"][0]
    assert face["identity"] == NAME
    assert labels(page)[0] == f"1 {NAME} · {face['score']:.2f}"
    summary = page.inner_text("#identify-summary")
    assert f"collection {FAMILY}" in summary
    assert f"threshold {family_probe['threshold']['value']:.3f}" in summary
    session.shot("2-identified-in-family")

    choose_collection(page, "default")
    status_shows(page, "collection default: 0 people, 0 faces")
    identify_in_page(page, lfw(PERSON, 3))
    assert labels(page) and labels(page)[0].startswith("1 unknown")
    assert page.locator("#identify-stage .face-box.known").count() == 0
    assert "collection default" in page.inner_text("#identify-summary")
    session.shot("3-unknown-in-default")

    # The gallery lists them only in family, and reloads when the collection changes.
    page.goto(f"{session.base}/#gallery")
    page.wait_for_selector("#gallery-rows[data-collection='default']")
    assert "Nobody is enrolled yet" in page.inner_text("#gallery-rows")
    assert page.locator("#gallery-rows tr[data-identity]").count() == 0
    choose_collection(page, FAMILY)
    row = page.locator(f"#gallery-rows[data-collection='{FAMILY}'] tr[data-identity='{NAME}']")
    row.wait_for()
    assert row.locator("td.num").inner_text() == "2"
    assert page.locator("#gallery-rows tr[data-identity]").count() == 1
    assert FAMILY in page.inner_text("#gallery-collection")
    session.shot("4-gallery-family")

    # The choice survives a reload of the tab, like the key.
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert page.input_value("#collection") == FAMILY
    page.wait_for_selector(f"#gallery-rows[data-collection='{FAMILY}'] tr[data-identity]")

    # A bad name: an error in words, and the last good collection stays in use.
    error = page.locator("#collection-error")
    for bad, words in [
        ("my family", "only letters (A–Z, a–z), digits and _ - ."),
        ("-family", "starts with a letter or a digit"),
        ("x" * 65, "at most 64 characters"),
    ]:
        choose_collection(page, bad)
        error.wait_for()
        assert words in error.inner_text(), error.inner_text()
        assert f"Still using the collection “{FAMILY}”." in error.inner_text()
        assert page.get_attribute("#collection", "aria-invalid") == "true"
        assert page.evaluate("sessionStorage.getItem('faceid.collection')") == FAMILY
    session.shot("5-bad-name")
    choose_collection(page, "Family.2024_b-1")  # every allowed kind of character
    error.wait_for(state="hidden")
    assert page.get_attribute("#collection", "aria-invalid") == "false"
    page.wait_for_selector("#gallery-rows[data-collection='Family.2024_b-1']")
    assert "Nobody is enrolled yet" in page.inner_text("#gallery-rows")

    assert session.recorder.foreign == []


def test_collection_refusals_are_shown_in_words(
    session: Session, live_service: LiveService
) -> None:
    """404 for a collection the key does not open and 403 for what its role may not do,
    with the service's messages (simulated: the test key opens every collection)."""
    refusals = {
        "/collections/secret/identities": (404, "not_found", "No collection named 'secret'."),
        "/collections/secret/identities/Ada/faces": (
            403,
            "forbidden",
            "This key's role (recognize) may not do this; it needs manage.",
        ),
    }

    def refuse(route: Any) -> None:
        path = route.request.url.split("?")[0].removeprefix(session.base)
        status, code, message = refusals[path]
        body = {"error": {"code": code, "message": message}}
        route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

    page = open_page(session, "gallery", key=live_service.key)
    page.route("**/collections/secret/**", refuse)
    choose_collection(page, "secret")
    page.wait_for_selector("#gallery-message.error")
    shown = page.inner_text("#gallery-message")
    assert "No collection named 'secret'." in shown
    assert "does not open the collection “secret”" in shown and "(404 not_found)" in shown
    session.shot("404-collection")

    page.goto(f"{session.base}/#enrol")
    page.fill("#enrol-name", "Ada")
    page.set_input_files("#enrol-files", str(lfw(PERSON, 1)))
    page.click("#enrol-submit")
    page.wait_for_selector("#enrol-message.error")
    outcome = page.inner_text("#enrol-outcomes .outcome-text")
    assert "may not do this" in outcome and "manage role" in outcome, outcome
    assert "(403 forbidden)" in outcome
    session.shot("403-enrol")


def test_page_and_assets_are_served_by_the_service(live_service: LiveService) -> None:
    """Without a key (a browser's page load sends none), although the service has keys."""
    page = httpx.get(f"{live_service.base}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/web/[^"]+)"', page.text)
    assert "/web/js/main.js" in assets and "/web/style.css" in assets
    for asset in assets:
        assert httpx.get(f"{live_service.base}{asset}", timeout=10).status_code == 200, asset
    assert "http://" not in page.text and "https://" not in page.text


FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def test_camera_photo_is_identified(browser: Any, live_service: LiveService) -> None:
    """The camera button, with Chromium's fake camera (a moving test pattern, no face):
    a frame is taken, uploaded as a JPEG and answered ("No face was found")."""
    camera = browser.browser_type.launch(
        executable_path=str(CHROMIUM),
        args=[*CHROMIUM_ARGS, *FAKE_CAMERA],
    )
    try:
        context = camera.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["camera"], origin=live_service.base)
        page = context.new_page()
        page.goto(f"{live_service.base}/#identify")
        page.wait_for_selector("body[data-ready='true']")
        page.fill("#api-key", live_service.key)
        page.click("#key-save")
        uploads: list[Any] = []
        page.on("request", lambda r: uploads.append(r) if "/identify?" in r.url else None)
        page.click("#camera-open")
        page.wait_for_function("() => document.getElementById('camera-video').videoWidth > 0")
        page.click("#camera-shoot")
        page.wait_for_selector("#view-identify[data-answers='1']", state="attached")
        assert page.inner_text("#identify-summary") == "No face was found in this photo."
        # One upload, decoded by the service as a photo (a bad one would be an error message).
        assert len(uploads) == 1
        assert uploads[0].headers["content-type"].startswith("multipart/form-data")
        assert page.locator("#identify-message").is_hidden()
        shots = OUTPUT / "test_camera_photo_is_identified"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "camera.png"))
        page.click("#camera-close")
        assert page.locator("#camera").is_hidden()
        context.close()
    finally:
        camera.close()
