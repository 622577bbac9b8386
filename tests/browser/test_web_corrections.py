"""The Gallery view's corrections (issue 24) in headless Chromium against a live service:
rename a person, edit their metadata, merge them into another, move one face; a refused
correction is explained in words and changes nothing. Each state is screenshotted."""

from __future__ import annotations

from typing import Any

import pytest
from browserkit import LiveService, Session
from faceid_testkit import DATA, lfw


@pytest.fixture(autouse=True)
def _empty_gallery(live_service: LiveService) -> None:
    if not (DATA / "lfw").is_dir():
        pytest.skip(f"no datasets at {DATA}")
    live_service.clear_gallery()


def _gallery(s: Session, key: str) -> Any:
    page = s.page
    page.goto(f"{s.base}/#gallery")
    page.wait_for_selector("body[data-ready='true']")
    page.fill("#api-key", key)
    page.click("#key-save")
    page.wait_for_selector("#gallery-rows tr[data-identity]")
    return page


def _row(page: Any, name: str) -> Any:
    return page.locator(f"#gallery-rows tr[data-identity='{name}']")


def _message(page: Any, kind: str, says: str) -> str:
    """The Gallery view's message once it is of ``kind`` and says ``says``."""
    page.wait_for_function(
        """([kind, says]) => {
            const m = document.getElementById('gallery-message');
            return m.classList.contains(kind) && m.textContent.includes(says);
        }""",
        arg=[kind, says],
    )
    return str(page.inner_text("#gallery-message"))


def test_rename_metadata_merge_and_move_in_the_gallery(
    session: Session, live_service: LiveService
) -> None:
    with live_service.client() as c:
        for name, photo in (
            ("Gore", lfw("Al_Gore", 1)),
            ("Al Gore", lfw("Al_Gore", 2)),
            ("Blair", lfw("Tony_Blair", 1)),
        ):
            assert (
                c.post(f"/identities/{name}/faces", files={"image": photo.read_bytes()}).status_code
                == 201
            )
    page = _gallery(session, live_service.key)
    session.shot("corrections-before")

    # a rename to a name that is enrolled is refused, in words, and nothing changes
    _row(page, "Gore").locator("button[data-action='rename']").click()
    page.fill("#gallery-rows input[name='new-name']", "Blair")
    page.locator("#gallery-rows .inline-form button[type='submit']").click()
    assert "(409 identity_exists)" in _message(page, "error", "already enrolled")
    assert page.locator("#gallery-rows tr[data-identity]").count() == 3

    # metadata
    _row(page, "Blair").locator("button[data-action='metadata']").click()
    page.fill("#gallery-rows input[name='external-id']", "emp-7")
    page.fill("#gallery-rows input[name='data']", '{"team": "uk"}')
    page.locator("#gallery-rows .inline-form button[type='submit']").click()
    assert _message(page, "ok", "metadata") == "The metadata of Blair was saved."
    assert "emp-7" in _row(page, "Blair").inner_text()

    # merge "Gore" into "Al Gore"
    _row(page, "Gore").locator("button[data-action='merge']").click()
    page.fill("#gallery-rows input[name='merge-into']", "Al Gore")
    page.locator("#gallery-rows .inline-form button[type='submit']").click()
    assert _message(page, "ok", "merged") == "Gore was merged into Al Gore, who now has 2 faces."
    assert _row(page, "Al Gore").locator("td.num").inner_text() == "2"
    assert _row(page, "Gore").count() == 0
    session.shot("corrections-merged")

    # move one of Al Gore's faces to a new person, then rename Blair
    row = _row(page, "Al Gore")
    row.get_by_role("button", name="Al Gore").click()
    faces = page.locator("#gallery-rows .faces-row li")
    faces.first.wait_for()
    face_id = faces.first.get_attribute("data-face-id")
    faces.first.locator("button[data-action='move']").click()
    page.fill("#gallery-rows input[name='move-to']", "Albert")
    page.locator("#gallery-rows .inline-form button[type='submit']").click()
    _message(page, "ok", "now belongs to Albert")
    _row(page, "Blair").locator("button[data-action='rename']").click()
    page.fill("#gallery-rows input[name='new-name']", "Tony Blair")
    page.locator("#gallery-rows .inline-form button[type='submit']").click()
    assert _message(page, "ok", "is now") == "Blair is now Tony Blair."
    session.shot("corrections-after")
    with live_service.client() as c:
        listing = c.get("/identities").json()["identities"]
        assert {i["identity"]: i["faces"] for i in listing} == {
            "Al Gore": 1,
            "Albert": 1,
            "Tony Blair": 1,
        }
        assert [f["face_id"] for f in c.get("/identities/Albert").json()["faces"]] == [face_id]
        assert c.get("/identities/Tony Blair").json()["metadata"] == {
            "external_id": "emp-7",
            "data": {"team": "uk"},
        }


def test_enrol_a_chosen_face_in_place_of_a_wrong_one(
    session: Session, live_service: LiveService
) -> None:
    """The Enrol view's face number and "in place of" face id: a face number the photo does
    not have is refused in words and stores nothing; the right face then replaces the wrong
    one in one step."""
    with live_service.client() as c:
        wrong = c.post("/identities/Gore/faces", files={"image": lfw("Tony_Blair").read_bytes()})
        assert wrong.status_code == 201
        wrong_id = wrong.json()["face_id"]
    page = session.page
    page.goto(f"{session.base}/#enrol")
    page.wait_for_selector("body[data-ready='true']")
    page.fill("#api-key", live_service.key)
    page.click("#key-save")
    page.fill("#enrol-name", "Gore")
    page.click("#enrol-choice summary")
    page.fill("#enrol-face-index", "7")
    page.fill("#enrol-replaces", wrong_id)
    page.set_input_files("#enrol-files", str(lfw("Al_Gore", 1)))
    page.click("#enrol-submit")
    page.wait_for_selector("#enrol-outcomes .outcome.warn")
    outcome = page.inner_text("#enrol-outcomes .outcome-text")
    assert "no_such_face" in outcome, outcome
    with live_service.client() as c:
        assert [f["face_id"] for f in c.get("/identities/Gore").json()["faces"]] == [wrong_id]

    page.fill("#enrol-face-index", "0")
    page.set_input_files("#enrol-files", str(lfw("Al_Gore", 1)))
    page.click("#enrol-submit")
    page.wait_for_selector("#enrol-outcomes .outcome.ok")
    outcome = page.inner_text("#enrol-outcomes .outcome-text")
    assert outcome.startswith("Enrolled as Gore") and f"in place of face {wrong_id}" in outcome
    session.shot("enrol-chosen-face")
    with live_service.client() as c:
        faces = c.get("/identities/Gore").json()["faces"]
        assert len(faces) == 1 and faces[0]["face_id"] != wrong_id
        named = c.post("/identify", files={"image": lfw("Al_Gore", 2).read_bytes()}).json()
        assert named["faces"][0]["identity"] == "Gore"
