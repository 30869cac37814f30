"""`make audit` (tools/dependency_audit.py): the verdict on a pip-audit report, dated
exceptions, and the refusal to pass when the vulnerability service did not answer."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 12, 3)
NOT_FOUND = "Dependency not found on PyPI and could not be audited"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dependency_audit", ROOT / "tools/dependency_audit.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


audit_tool = _load()


def _lock(tmp_path: Path, text: str = "jinja2==3.1.2\nrequests==2.31.0\n") -> Path:
    path = tmp_path / "constraints.txt"
    path.write_text(text)
    return path


def _exceptions(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "audit-exceptions.toml"
    path.write_text(text)
    return path


REPORT: dict[str, Any] = {
    "dependencies": [
        {"name": "requests", "version": "2.31.0", "vulns": []},
        {
            "name": "Jinja2",
            "version": "3.1.2",
            "vulns": [
                {
                    "id": "GHSA-h5c8-rqwp-cp95",
                    "aliases": ["CVE-2024-22195", "PYSEC-2024-1"],
                    "fix_versions": ["3.1.3"],
                }
            ],
        },
    ]
}


def _run(tmp_path: Path, exceptions: str, report: dict[str, Any] = REPORT) -> Any:
    return audit_tool.audit(
        _lock(tmp_path),
        _exceptions(tmp_path, exceptions),
        today=TODAY,
        scan=lambda lock, service: report,
        check_service=lambda service, name, version: None,
    )


def test_an_unaccepted_vulnerability_fails_naming_package_id_and_fix(tmp_path: Path) -> None:
    verdict = _run(tmp_path, "")
    assert verdict.code == 1
    assert verdict.lines == [
        "audit: jinja2 3.1.2 has GHSA-h5c8-rqwp-cp95 (fixed in: 3.1.3); upgrade it in "
        "constraints.txt or add a dated exception"
    ]


def test_a_dated_exception_accepts_it_by_id_or_alias(tmp_path: Path) -> None:
    verdict = _run(
        tmp_path,
        '[[exception]]\nid = "CVE-2024-22195"\npackage = "jinja2"\n'
        'reason = "templates are ours, never user input"\nexpires = 2026-12-31\n',
    )
    assert verdict.code == 0
    assert verdict.lines[0] == (
        "audit: jinja2 3.1.2 GHSA-h5c8-rqwp-cp95 accepted until 2026-12-31: "
        "templates are ours, never user input"
    )
    assert verdict.lines[-1] == "audit: 2 locked packages, no known vulnerability"


def test_an_expired_exception_fails_even_when_nothing_is_found(tmp_path: Path) -> None:
    clean = {"dependencies": [{"name": "requests", "version": "2.31.0", "vulns": []}]}
    verdict = _run(
        tmp_path,
        '[[exception]]\nid = "GHSA-x"\npackage = "requests"\nreason = "r"\nexpires = 2026-12-02\n',
        clean,
    )
    assert verdict.code == 1
    assert verdict.lines[0].startswith("audit: exception GHSA-x (requests) expired on 2026-12-02")
    # the last day of an exception still counts
    same_day = '[[exception]]\nid = "GHSA-h5c8-rqwp-cp95"\npackage = "jinja2"\nreason = "r"\n'
    assert _run(tmp_path, same_day + "expires = 2026-12-03\n").code == 0


def test_an_exception_for_another_package_does_not_accept_the_id(tmp_path: Path) -> None:
    verdict = _run(
        tmp_path,
        '[[exception]]\nid = "GHSA-h5c8-rqwp-cp95"\npackage = "flask"\nreason = "r"\n'
        "expires = 2027-01-01\n",
    )
    assert verdict.code == 1
    assert "matches nothing" in verdict.lines[-1]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[exception]]\nid = "X"\npackage = "p"\nexpires = 2027-01-01\n', "lacks reason"),
        ('[[exception]]\nid = "X"\npackage = "p"\nreason = "r"\nexpires = "soon"\n', "a date"),
        (
            '[[exception]]\nid = "X"\npackage = "p"\nreason = "r"\nexpires = 2027-01-01\nby = 1\n',
            "unknown keys ['by']",
        ),
        ('ignore = ["X"]\n', "only [[exception]]"),
    ],
)
def test_a_bad_exceptions_file_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    verdict = _run(tmp_path, text)
    assert verdict.code == 3
    assert problem in verdict.lines[0]


def test_packages_the_service_could_not_audit_fail_the_audit(tmp_path: Path) -> None:
    # What pip-audit 2.10 reports when the per-version JSON API answers 404 for every
    # package (as from this machine): exit 0 and "No known vulnerabilities found".
    skipped = {
        "dependencies": [
            {
                "name": "jinja2",
                "skip_reason": f"{NOT_FOUND}: jinja2 (3.1.2)",
            },
            {
                "name": "requests",
                "skip_reason": f"{NOT_FOUND}: requests (2.31.0)",
            },
        ]
    }
    verdict = _run(tmp_path, "", skipped)
    assert verdict.code == 2
    assert verdict.lines == [
        "audit: FAILED: the vulnerability service could not audit 2 of 2 locked packages "
        "(first: jinja2: Dependency not found on PyPI and could not be audited: jinja2 "
        "(3.1.2)); no result is not a pass"
    ]


def test_an_unreachable_service_fails_at_once_in_one_line(tmp_path: Path) -> None:
    scanned: list[str] = []
    verdict = audit_tool.audit(
        _lock(tmp_path),
        tmp_path / "none.toml",
        service="osv",
        today=TODAY,
        scan=lambda lock, service: scanned.append(service) or REPORT,
        check_service=lambda service, name, version: f"{service} is unreachable",
    )
    assert verdict.code == 2 and scanned == []
    assert verdict.lines == [
        "audit: FAILED: the vulnerability service (osv) cannot be used from this machine: "
        "osv is unreachable; the lock was not audited"
    ]


def test_make_test_runs_the_audit_of_the_lock_with_pip_audit_from_the_dev_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_deps = re.search(r"^test: (.*)$", makefile, re.M)
    assert test_deps is not None and "audit" in test_deps[1].split()
    recipe = re.search(r"^audit: .*\n\t(.*)$", makefile, re.M)
    assert recipe is not None
    assert "tools/dependency_audit.py --lock constraints.txt" in recipe[1]
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "pip-audit" in dev["dev"]
    pins = audit_tool.read_lock(ROOT / "constraints.txt")
    assert pins["pip-audit"]
    assert audit_tool.read_exceptions(ROOT / "audit-exceptions.toml") == []
