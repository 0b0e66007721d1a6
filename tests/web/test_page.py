"""The page at ``/`` in a real browser (Debian's chromium) against the real service."""

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LFPW, PHOTOS, REPO
from tests.web.conftest import BrowserTab

FACE_PHOTO = LFPW / "image_0001.png"
GROUP_PHOTO = PHOTOS / "bald_guys.jpg"
NO_FACE_PHOTO = PHOTOS / "dogs.jpg"


def upload(page: Page, path: Path) -> None:
    """Open the page (if not open yet) and choose ``path`` with the file picker."""
    if not page.url.startswith("http"):
        page.goto("/")
    with page.expect_response(lambda response: "/landmarks" in response.url):
        page.locator("#file").set_input_files(path)


def drawn_faces(page: Page):
    return page.locator("#overlay .face")


def wait_for_faces(page: Page, count: int) -> None:
    expect(drawn_faces(page)).to_have_count(count)
    expect(page.locator("#result")).to_be_visible()


def api_answer(server_url: str, path: Path) -> dict:
    """The service's own answer for ``path``, asked directly (not through the page)."""
    with path.open("rb") as handle:
        response = httpx.post(f"{server_url}/landmarks", files={"image": (path.name, handle)}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_page_draws_the_68_points_of_a_face_where_the_api_puts_them(tab: BrowserTab, live_server, artifacts):
    page = tab.page
    upload(page, FACE_PHOTO)
    wait_for_faces(page, 1)
    points = page.locator('#overlay .face[data-index="0"] circle.point')
    expect(points).to_have_count(68)
    drawn = points.evaluate_all("circles => circles.map(c => [c.cx.baseVal.value, c.cy.baseVal.value])")
    expected = api_answer(live_server.url, FACE_PHOTO)["faces"][0]["landmarks"]
    np.testing.assert_allclose(drawn, expected, atol=0.01)

    # On screen the nose tip (point 30) sits where its pixel is on the displayed photo.
    photo = page.locator("#photo").bounding_box()
    width, height = page.locator("#photo").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    nose = points.nth(30).bounding_box()
    x, y = expected[30]
    assert nose["x"] + nose["width"] / 2 == pytest.approx(photo["x"] + x * photo["width"] / width, abs=1.5)
    assert nose["y"] + nose["height"] / 2 == pytest.approx(photo["y"] + y * photo["height"] / height, abs=1.5)

    expect(page.locator("#faces li")).to_have_count(1)
    expect(page.locator("#faces li")).to_contain_text("score")
    expect(page.locator("#message")).to_be_hidden()
    page.screenshot(path=artifacts / "page-one-face.png", full_page=True)


def test_page_shows_the_24_faces_of_the_group_photo(tab: BrowserTab, artifacts):
    page = tab.page
    upload(page, GROUP_PHOTO)
    wait_for_faces(page, 24)
    expect(page.locator("#overlay circle.point")).to_have_count(24 * 68)
    expect(page.locator("#overlay rect.box")).to_have_count(24)
    expect(page.locator("#faces li")).to_have_count(24)
    expect(page.locator("#summary")).to_contain_text("24 faces")
    page.screenshot(path=artifacts / "page-group.png", full_page=True)


def test_page_says_no_face_found_for_a_photo_of_dogs(tab: BrowserTab, artifacts):
    page = tab.page
    upload(page, NO_FACE_PHOTO)
    expect(page.locator('#message[data-kind="no-face"]')).to_contain_text("No face found")
    expect(page.locator("#photo")).to_be_visible()
    expect(drawn_faces(page)).to_have_count(0)
    page.screenshot(path=artifacts / "page-no-face.png", full_page=True)


def test_page_shows_the_api_error_for_a_file_that_is_no_image(tab: BrowserTab, artifacts):
    page = tab.page
    page.goto("/")
    with page.expect_response(lambda response: "/landmarks" in response.url) as answer:
        page.locator("#file").set_input_files(REPO / "README.md")
    response = answer.value
    assert 400 <= response.status < 500
    error = response.json()["error"]
    message = page.locator('#message[data-kind="error"]')
    expect(message).to_contain_text(error["message"])
    expect(message).to_contain_text(error["request_id"])
    expect(page.locator("#result")).to_be_hidden()
    page.screenshot(path=artifacts / "page-error.png", full_page=True)


def test_a_new_photo_replaces_the_error_and_the_previous_result(tab: BrowserTab):
    page = tab.page
    upload(page, REPO / "README.md")
    expect(page.locator('#message[data-kind="error"]')).to_be_visible()
    upload(page, FACE_PHOTO)
    wait_for_faces(page, 1)
    expect(page.locator("#message")).to_be_hidden()
    upload(page, NO_FACE_PHOTO)
    expect(page.locator('#message[data-kind="no-face"]')).to_be_visible()
    expect(drawn_faces(page)).to_have_count(0)
    expect(page.locator("#faces li")).to_have_count(0)


def test_toggles_show_and_hide_points_numbers_and_boxes(tab: BrowserTab):
    page = tab.page
    upload(page, FACE_PHOTO)
    wait_for_faces(page, 1)
    points, numbers = page.locator("#overlay circle.point"), page.locator("#overlay text.number")
    box = page.locator("#overlay rect.box")
    expect(points.first).to_be_visible()
    expect(numbers.first).to_be_hidden()  # numbers start off
    expect(box).to_be_visible()

    page.get_by_label("point numbers").check()
    expect(numbers).to_have_count(68)
    expect(numbers.nth(67)).to_be_visible()
    expect(numbers.nth(67)).to_have_text("67")
    page.get_by_label("points", exact=True).uncheck()
    expect(points.first).to_be_hidden()
    page.get_by_label("boxes").uncheck()
    expect(box).to_be_hidden()
    page.get_by_label("points", exact=True).check()
    expect(points.first).to_be_visible()


def test_upsample_auto_sends_no_parameter_and_a_choice_resends_the_photo(tab: BrowserTab):
    page = tab.page
    page.goto("/")
    with page.expect_request(lambda request: "/landmarks" in request.url) as sent:
        page.locator("#file").set_input_files(FACE_PHOTO)
    assert "upsample" not in sent.value.url
    wait_for_faces(page, 1)
    with page.expect_request(lambda request: "/landmarks" in request.url) as sent:
        page.locator("#upsample").select_option("1")
    assert sent.value.url.endswith("/landmarks?upsample=1")
    expect(page.locator("#summary")).to_contain_text("upsample 1")
    wait_for_faces(page, 1)


def test_api_key_is_sent_as_x_api_key_and_kept_in_session_storage_only(tab: BrowserTab):
    page = tab.page
    page.goto("/")
    with page.expect_request(lambda request: "/landmarks" in request.url) as sent:
        page.locator("#file").set_input_files(FACE_PHOTO)
    assert "x-api-key" not in sent.value.headers  # no key, no header

    page.get_by_label("API key").fill("test-key-123")
    with page.expect_request(lambda request: "/landmarks" in request.url) as sent:
        page.locator("#file").set_input_files(FACE_PHOTO)
    assert sent.value.headers["x-api-key"] == "test-key-123"
    assert page.evaluate("Object.values(sessionStorage)") == ["test-key-123"]
    assert page.evaluate("localStorage.length") == 0
    assert "test-key-123" not in page.evaluate("document.cookie")

    page.reload()
    expect(page.get_by_label("API key")).to_have_value("test-key-123")  # same tab keeps it
    other = page.context.new_page()
    other.goto("/")
    expect(other.get_by_label("API key")).to_have_value("")  # another tab does not


DROP_OR_PASTE = """([kind, name, data]) => {
    const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, {type: "image/png"}));
    if (kind === "paste") {
        document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true}));
    } else {
        const zone = document.getElementById("drop");
        const options = {dataTransfer: transfer, bubbles: true, cancelable: true};
        for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, options));
        }
    }
}"""


@pytest.mark.parametrize("kind", ["drop", "paste"])
def test_a_dropped_or_pasted_photo_is_sent(tab: BrowserTab, kind: str):
    page = tab.page
    page.goto("/")
    data = base64.b64encode(FACE_PHOTO.read_bytes()).decode()
    with page.expect_response(lambda response: "/landmarks" in response.url) as answer:
        page.evaluate(DROP_OR_PASTE, [kind, FACE_PHOTO.name, data])
    assert answer.value.status == 200
    wait_for_faces(page, 1)
    expect(page.locator("#overlay circle.point")).to_have_count(68)
    assert page.url.rstrip("/") == tab.guard.origin  # the drop did not navigate to the file


def test_download_saves_the_api_json(tab: BrowserTab, live_server):
    page = tab.page
    upload(page, FACE_PHOTO)
    wait_for_faces(page, 1)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download JSON").click()
    assert download.value.suggested_filename == "image_0001.landmarks.json"
    body = json.loads(Path(download.value.path()).read_text())
    assert body["image"] == {"width": 412, "height": 600}
    assert body["faces"] == api_answer(live_server.url, FACE_PHOTO)["faces"]


def test_page_fits_a_phone_screen(phone_tab: BrowserTab, artifacts):
    page = phone_tab.page
    upload(page, GROUP_PHOTO)
    wait_for_faces(page, 24)
    viewport = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport  # no sideways scrolling
    photo = page.locator("#photo").bounding_box()
    assert photo["x"] >= 0 and photo["x"] + photo["width"] <= viewport
    for control in ("#drop", "#upsample", "#api-key", "#faces"):
        box = page.locator(control).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport, control
    page.screenshot(path=artifacts / "page-phone.png", full_page=True)


def test_page_keeps_to_its_origin_and_breaks_no_csp_rule(tab: BrowserTab):
    page = tab.page
    upload(page, FACE_PHOTO)
    wait_for_faces(page, 1)
    page.get_by_label("point numbers").check()
    assert tab.guard.foreign == []
    assert any(url.endswith("/web/app.js") for url in tab.guard.requests)
    assert not [line for line in tab.console if "Content Security Policy" in line or "pageerror" in line]


def test_pose_error_estimate_and_detection_upsample_are_shown_when_the_api_sends_them(
    tab: BrowserTab, live_server
):
    """Newer services add ``pose`` and ``error_estimate`` to each face and ``detection.upsample`` to
    the answer; the page shows them. The page gets the service's real answer for the photo with those
    fields added. (Asked with httpx: Playwright drops the file from an intercepted multipart body.)"""
    page = tab.page
    body = api_answer(live_server.url, FACE_PHOTO)
    body["faces"][0]["pose"] = {"yaw": 12.5, "pitch": -3.25, "roll": 1.0}
    body["faces"][0]["error_estimate"] = 0.0312
    body["detection"] = {"upsample": 1}

    def with_new_fields(route) -> None:
        route.fulfill(json=body)

    page.route("**/landmarks", with_new_fields)
    upload(page, FACE_PHOTO)
    wait_for_faces(page, 1)
    face = page.locator("#faces li").first
    expect(face).to_contain_text("pose yaw 12.5° · pitch -3.3° · roll 1.0°")
    expect(face).to_contain_text("error estimate 0.031")
    expect(page.locator("#summary")).to_contain_text("upsample 1 (auto)")


def test_the_served_faces_list_their_pose_and_error_estimate(tab: BrowserTab):
    """The real answer of the shipped model: every face has a pose and an error estimate."""
    page = tab.page
    upload(page, FACE_PHOTO)
    wait_for_faces(page, 1)
    face = page.locator("#faces li").first
    expect(face).to_contain_text("score")
    expect(face).to_contain_text("pose")
    expect(face).to_contain_text("error estimate")
