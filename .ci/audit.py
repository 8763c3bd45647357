"""CI's vulnerability audit of requirements/serve.lock: pip-audit's JSON report (argv[1]), checked
again for the packages it could not audit, then one verdict. Exit status 1 if any package has a
known vulnerability.

pip-audit asks PyPI for each release (/pypi/NAME/VERSION/json). Where that endpoint does not
answer (some mirrors and proxies serve only /pypi/NAME/json), the project's JSON still lists the
vulnerabilities of its latest release: exact for a pin that is the latest release. Any other
package is reported as not audited, never as safe.
"""
import json
import sys
import urllib.request


def latest_release_vulnerabilities(name: str, version: str) -> list[str] | None:
    """The ids of the known vulnerabilities of NAME==VERSION if VERSION is the latest release
    on PyPI, else None (unknown from here)."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as reply:
        project = json.load(reply)
    if project["info"]["version"] != version:
        return None
    return [v["id"] for v in project["vulnerabilities"]]


def main(report_path: str) -> int:
    report = json.load(open(report_path))["dependencies"]
    vulnerable = {d["name"]: [v["id"] for v in d["vulns"]] for d in report if d.get("vulns")}
    unaudited = []
    for skipped in (d for d in report if "skip_reason" in d):
        version = skipped["skip_reason"].rpartition("(")[2].rstrip(")")
        ids = latest_release_vulnerabilities(skipped["name"], version)
        if ids is None:
            unaudited.append(f"{skipped['name']}=={version}")
        elif ids:
            vulnerable[skipped["name"]] = ids
    for name, ids in sorted(vulnerable.items()):
        print(f"audit: {name} has known vulnerabilities: {', '.join(ids)}")
    print(f"audit: {len(report) - len(unaudited)} of {len(report)} locked packages audited, "
          f"{len(vulnerable)} vulnerable" +
          (f"; not audited (no vulnerability data for that release): {', '.join(unaudited)}"
           if unaudited else ""))
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
