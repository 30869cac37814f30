"""Audit the lock (constraints.txt) for known vulnerabilities: ``make audit``.

Runs ``pip-audit`` over the pinned versions of the lock (no resolution, no install:
``--no-deps --disable-pip``), then decides:

- a vulnerability listed in the exceptions file (``audit-exceptions.toml``: id,
  package, reason, expiry date) whose expiry has not passed is accepted, and printed;
- any other vulnerability fails the audit;
- an exception whose date has passed fails the audit, whatever the scan finds;
- a package the service could not audit fails the audit: pip-audit itself reports
  "no known vulnerabilities" when the service answers 404 for every package, which
  is no result at all.

Before the scan one request checks that the vulnerability service answers for a
pinned version; when it does not, the audit fails at once with one line saying so
(it never takes the minutes that 160 timed-out requests would). Exit codes: 0 clean,
1 vulnerabilities or expired exceptions, 2 the service could not audit the lock,
3 a bad exceptions file or lock.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {
    # What pip-audit asks for each pinned package.
    "pypi": "https://pypi.org/pypi/{name}/{version}/json",
    "osv": "https://api.osv.dev/v1/query",
}
CLEAN, VULNERABLE, UNREACHABLE, BAD_INPUT = 0, 1, 2, 3


class AuditInputError(Exception):
    """The lock or the exceptions file is not what the audit needs."""


@dataclass(frozen=True)
class AuditException:
    """One accepted vulnerability, until ``expires`` (inclusive)."""

    id: str
    package: str
    reason: str
    expires: date

    def expired(self, today: date) -> bool:
        return today > self.expires


@dataclass(frozen=True)
class Finding:
    """One vulnerability of one locked package."""

    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    """What the audit decided, and the lines that say why."""

    code: int
    lines: list[str]


def read_lock(path: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of the lock."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise AuditInputError(f"{path}:{number}: not a name==version pin: {raw!r}")
        pins[name.strip().lower()] = version.strip()
    if not pins:
        raise AuditInputError(f"{path}: no pins")
    return pins


def read_exceptions(path: Path) -> list[AuditException]:
    """The accepted vulnerabilities of ``path`` (none when the file does not exist).

    Raises:
        AuditInputError: an entry without id, package, reason or a date ``expires``.
    """
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise AuditInputError(f"{path}: {exc}") from None
    entries = data.get("exception", [])
    if not isinstance(entries, list) or set(data) - {"exception"}:
        raise AuditInputError(f"{path}: only [[exception]] tables are allowed")
    found = []
    for index, entry in enumerate(entries, 1):
        where = f"{path}: exception {index}"
        missing = [k for k in ("id", "package", "reason", "expires") if not entry.get(k)]
        if missing:
            raise AuditInputError(f"{where} lacks {', '.join(missing)}")
        unknown = sorted(set(entry) - {"id", "package", "reason", "expires"})
        if unknown:
            raise AuditInputError(f"{where}: unknown keys {unknown}")
        expires = entry["expires"]
        if isinstance(expires, datetime) or not isinstance(expires, date):
            raise AuditInputError(f"{where}: expires must be a date (YYYY-MM-DD)")
        found.append(
            AuditException(
                id=str(entry["id"]),
                package=str(entry["package"]).lower(),
                reason=str(entry["reason"]),
                expires=expires,
            )
        )
    return found


def parse_report(report: dict[str, Any]) -> tuple[list[Finding], list[str]]:
    """pip-audit's JSON report: the findings and the packages it could not audit."""
    findings: list[Finding] = []
    skipped: list[str] = []
    for dep in report.get("dependencies", []):
        name = str(dep["name"]).lower()
        if "skip_reason" in dep:
            skipped.append(f"{name}: {dep['skip_reason']}")
            continue
        for vuln in dep.get("vulns", []):
            findings.append(
                Finding(
                    package=name,
                    version=str(dep.get("version", "?")),
                    id=str(vuln["id"]),
                    aliases=tuple(str(a) for a in vuln.get("aliases", [])),
                    fix_versions=tuple(str(v) for v in vuln.get("fix_versions", [])),
                )
            )
    return findings, skipped


def decide(
    findings: Sequence[Finding],
    skipped: Sequence[str],
    exceptions: Sequence[AuditException],
    today: date,
    audited: int,
) -> Verdict:
    """The audit's verdict on a scan (see the module's docstring for the rules)."""
    lines: list[str] = []
    code = CLEAN
    expired = [e for e in exceptions if e.expired(today)]
    for exc in expired:
        lines.append(
            f"audit: exception {exc.id} ({exc.package}) expired on {exc.expires}: "
            "fix the dependency or renew the exception with a new date and reason"
        )
        code = VULNERABLE
    live = [e for e in exceptions if not e.expired(today)]
    used: set[AuditException] = set()
    for finding in findings:
        ids = {finding.id, *finding.aliases}
        accepted = next((e for e in live if e.package == finding.package and e.id in ids), None)
        fix = ", ".join(finding.fix_versions) or "none yet"
        if accepted is not None:
            used.add(accepted)
            lines.append(
                f"audit: {finding.package} {finding.version} {finding.id} accepted until "
                f"{accepted.expires}: {accepted.reason}"
            )
        else:
            lines.append(
                f"audit: {finding.package} {finding.version} has {finding.id} "
                f"(fixed in: {fix}); upgrade it in constraints.txt or add a dated exception"
            )
            code = VULNERABLE
    for exc in live:
        if exc not in used:
            lines.append(f"audit: exception {exc.id} ({exc.package}) matches nothing: drop it")
    if skipped:
        lines.append(
            f"audit: FAILED: the vulnerability service could not audit {len(skipped)} of "
            f"{audited} locked packages (first: {skipped[0]}); no result is not a pass"
        )
        return Verdict(max(code, UNREACHABLE), lines)
    if code == CLEAN:
        lines.append(f"audit: {audited} locked packages, no known vulnerability")
    return Verdict(code, lines)


def probe(service: str, name: str, version: str, timeout_s: float = 10.0) -> str | None:
    """None when ``service`` answers about ``name==version``; else why not, in a few words."""
    url = SERVICES[service]
    if service == "pypi":
        request = urllib.request.Request(url.format(name=name, version=version))  # noqa: S310 - fixed https URL
    else:
        body = {"package": {"name": name, "ecosystem": "PyPI"}, "version": version}
        request = urllib.request.Request(  # noqa: S310 - fixed https URL
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - fixed https URLs
            response.read()
            return None
    except urllib.error.HTTPError as exc:
        return f"{request.full_url} answered HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{request.full_url} is unreachable ({reason})"


def run_pip_audit(lock: Path, service: str, timeout_s: float) -> dict[str, Any]:
    """pip-audit's JSON report on the pins of ``lock``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = [
            sys.executable, "-m", "pip_audit",
            "--requirement", str(lock),
            "--no-deps", "--disable-pip",
            "--vulnerability-service", service,
            "--format", "json", "--output", str(out),
            "--progress-spinner", "off",
            "--timeout", "15",
        ]  # fmt: skip
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise AuditInputError(f"pip-audit did not finish within {timeout_s:.0f}s") from None
        if not out.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise AuditInputError(f"pip-audit failed (exit {done.returncode}): {last}")
        report: dict[str, Any] = json.loads(out.read_text())
        return report


def audit(
    lock: Path,
    exceptions_file: Path,
    *,
    service: str = "pypi",
    today: date | None = None,
    scan: Callable[[Path, str], dict[str, Any]] | None = None,
    check_service: Callable[[str, str, str], str | None] = probe,
    timeout_s: float = 60.0,
) -> Verdict:
    """Audit ``lock`` against the vulnerability ``service``, honouring the exceptions."""
    today = today or datetime.now(UTC).date()
    try:
        pins = read_lock(lock)
        exceptions = read_exceptions(exceptions_file)
    except AuditInputError as exc:
        return Verdict(BAD_INPUT, [f"audit: {exc}"])
    # pip-audit's own pin: a package the service surely knows (a 404 is the service's).
    name = "pip-audit" if "pip-audit" in pins else min(pins)
    version = pins[name]
    why = check_service(service, name, version)
    if why is not None:
        return Verdict(
            UNREACHABLE,
            [
                f"audit: FAILED: the vulnerability service ({service}) cannot be used from "
                f"this machine: {why}; the lock was not audited"
            ],
        )
    try:
        report = (
            scan(lock, service) if scan is not None else run_pip_audit(lock, service, timeout_s)
        )
    except AuditInputError as exc:
        return Verdict(UNREACHABLE, [f"audit: FAILED: {exc}"])
    findings, skipped = parse_report(report)
    return decide(findings, skipped, exceptions, today, audited=len(pins))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "constraints.txt")
    parser.add_argument("--exceptions", type=Path, default=ROOT / "audit-exceptions.toml")
    parser.add_argument("--service", choices=sorted(SERVICES), default="pypi")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the scan")
    args = parser.parse_args(argv)
    verdict = audit(args.lock, args.exceptions, service=args.service, timeout_s=args.timeout)
    for line in verdict.lines:
        print(line, file=sys.stderr if verdict.code else sys.stdout)
    return verdict.code


if __name__ == "__main__":
    sys.exit(main())
