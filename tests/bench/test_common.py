"""bench.common: each benchmark script rewrites only its own part of a report, and stores it as it grows."""

from bench.common import Report, write_section


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


def test_a_report_is_printed_and_stored_after_each_part(tmp_path, capsys):
    path = tmp_path / "PERFORMANCE.md"
    report = Report("bench.video", path, "###", ["## Video", ""])
    assert not path.exists()  # the header alone is not stored: a run that dies at once keeps the old figures
    report.section("Speed", ["| a |", "|---|"], text="Measured on frames.")
    stored = path.read_text()
    report.section("Jitter", ["| b |"])
    assert stored == (
        "<!-- begin bench.video -->\n## Video\n\n### Speed\n\nMeasured on frames.\n\n| a |\n|---|\n\n"
        "<!-- end bench.video -->\n"
    )
    assert path.read_text().endswith("### Jitter\n\n| b |\n\n<!-- end bench.video -->\n")
    assert capsys.readouterr().out == "\n".join(report.lines) + "\n"  # each part printed as it came
