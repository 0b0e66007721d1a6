"""bench.common.write_section: each benchmark script rewrites only its own part of a report."""

from bench.common import write_section


def test_sections_are_appended_then_replaced_in_place(tmp_path):
    report = tmp_path / "PERFORMANCE.md"
    write_section(report, "bench.run", ["# Performance", "first run"])
    write_section(report, "bench.detection", ["## Detection", "counts"])
    write_section(report, "bench.run", ["# Performance", "second run"])
    text = report.read_text()
    assert "first run" not in text and "second run" in text and "counts" in text
    assert text.index("second run") < text.index("counts")  # replaced where it was
    assert text.count("<!-- begin bench.run -->") == 1 and text.count("<!-- end bench.detection -->") == 1


def test_text_outside_the_sections_is_kept(tmp_path):
    report = tmp_path / "PERFORMANCE.md"
    report.write_text("written by hand\n")
    write_section(report, "bench.detection", ["figures"])
    write_section(report, "bench.detection", ["new figures"])
    assert report.read_text() == (
        "written by hand\n\n<!-- begin bench.detection -->\nnew figures\n<!-- end bench.detection -->\n"
    )
