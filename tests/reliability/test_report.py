"""docs/reliability.md is generated from this suite: it fails when the page differs from what the report writes."""

from ..conftest import REPO, load_script

AREAS = ("pipeline", "images", "loading", "training")


def test_docs_reliability_md_is_what_the_report_writes_from_this_suite():
    report = load_script("reliability_report", "scripts")
    cases, _ = report.collect()
    assert len(cases) >= 132, f"only {len(cases)} reliability cases collected; the former probe had 132"
    assert {case.area for case in cases} == set(AREAS)
    for case in cases:
        assert case.outcome in ("clear error", "handled") or case.xfail, f"{case.nodeid}: {case.outcome}, not xfail"
    doc = REPO / "docs" / "reliability.md"
    assert report.render(cases, doc.read_text()) == doc.read_text(), (
        "docs/reliability.md is out of date with tests/reliability: run `python scripts/reliability_report.py` "
        "(or `make reliability-doc`) and commit the result."
    )
