"""/docs and /redoc render in a real browser from the service's own files, with no request leaving
its origin (as on a machine without internet access)."""

from playwright.sync_api import expect

from tests.web.conftest import BrowserTab


def test_swagger_ui_lists_post_landmarks_with_no_request_leaving_the_origin(tab: BrowserTab, artifacts):
    page = tab.page
    page.goto("/docs")
    operation = page.locator('.opblock-post .opblock-summary-path[data-path="/landmarks"]')
    expect(operation).to_be_visible()
    summary = "Every face in the photo with its 68 landmarks"
    expect(page.locator(".opblock-post").first).to_contain_text(summary)
    page.screenshot(path=artifacts / "docs-swagger.png")
    assert tab.guard.foreign == []
    assert any("/openapi.json" in url for url in tab.guard.requests)


def test_redoc_lists_post_landmarks_with_no_request_leaving_the_origin(tab: BrowserTab, artifacts):
    page = tab.page
    page.goto("/redoc")
    expect(page.get_by_role("heading", name="Every face in the photo with its 68 landmarks")).to_be_visible()
    expect(page.get_by_role("button", name="post /landmarks", exact=True)).to_be_visible()
    page.screenshot(path=artifacts / "docs-redoc.png")
    assert tab.guard.foreign == []
    assert any("/openapi.json" in url for url in tab.guard.requests)
