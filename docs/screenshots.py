"""Look at the built documentation in a real browser: headless Chromium screenshots of the main
pages at 1200 px and at phone width, and a check that no page scrolls sideways.

Run it after building the site (or let it build one)::

    python docs/screenshots.py                       # builds into a temporary directory
    python docs/screenshots.py --html docs/_build/html --out /tmp/shots index signals

It writes ``PAGE-WIDTH.png`` for every page and width into ``--out`` (look at them: the check
below catches sideways scrolling, not ugliness) and prints, per page and width, how many pixels
the page is wider than the window, with the widest elements when it is. Exit status 1 if any
page scrolls sideways. Needs ``chromium`` (Debian: ``apt-get install chromium``).

The sideways check runs in the page itself: a copy of each page gets a script that, once laid
out, writes ``document.documentElement.scrollWidth - clientWidth`` and the elements sticking
out into the DOM, which ``chromium --dump-dom`` prints. Chromium's window is at least 500 px
wide, so a phone-width page is shown in a 390-px ``<iframe>`` (its own viewport: the theme's
media queries see 390 px), served with the site from a local HTTP server so the probe may
write into the frame's parent.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

DOCS = Path(__file__).resolve().parent
#: The pages looked at by default: the front page, the tutorials, the wide tables, the API.
PAGES = ("index", "quickstart", "tutorial-first", "signals", "statuses", "actions", "postfix",
         "logging", "blocking", "server", "api")
#: Window sizes: a laptop, and a phone (CSS pixels).
WIDTHS = {1200: 900, 390: 844}
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    "--disable-dev-shm-usage", "--force-device-scale-factor=1",
)

_PROBE = """<script>
window.addEventListener("load", function () {
  var root = document.documentElement, width = root.clientWidth, wide = [];
  document.querySelectorAll("body *").forEach(function (el) {
    var box = el.getBoundingClientRect();
    if (box.right > width + 1 && box.width > 0) {
      var inside = el.parentElement;
      while (inside && getComputedStyle(inside).overflowX === "visible") {
        inside = inside.parentElement;
      }
      if (!inside || inside === document.body || inside === root) {
        wide.push(el.tagName.toLowerCase() + (el.className ? "." + el.className : "") +
                  "(" + Math.round(box.right) + ")");
      }
    }
  });
  var host = window.parent !== window ? window.parent.document : document;
  var out = host.createElement("pre");
  out.id = "milterkit-overflow";
  out.textContent = (root.scrollWidth - width) + "|" + wide.slice(0, 5).join(" ");
  host.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    """The Chromium executable, or exit with a clear line."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("screenshots.py: no chromium on PATH (apt-get install chromium)")


def build(target: Path) -> Path:
    """Build the site with warnings as errors into ``target``."""
    subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(DOCS),
                    str(target)], check=True)
    return target


#: Chromium's narrowest window; narrower pages are shown in a frame of their width.
MIN_WINDOW = 500


@contextlib.contextmanager
def serving(site: Path) -> Iterator[str]:
    """Serve ``site`` on a free local port; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _url(site: Path, base: str, page: Path, width: int, height: int) -> tuple[str, int]:
    """The URL to open for ``page`` at ``width`` and the window width to open it in."""
    relative = page.relative_to(site).as_posix()
    if width >= MIN_WINDOW:
        return base + relative, width
    frame = site / f".frame-{page.stem}-{width}.html"
    frame.write_text(
        '<!doctype html><html><body style="margin:0;background:#888">'
        f'<iframe src="{relative}" style="width:{width}px;height:{height}px;border:0;'
        'background:#fff"></iframe></body></html>', encoding="utf-8")
    return base + frame.name, MIN_WINDOW


def screenshot(browser: str, site: Path, base: str, page: Path, width: int, height: int,
               png: Path) -> None:
    """Save a screenshot of ``page`` in a ``width`` x ``height`` viewport."""
    url, window = _url(site, base, page, width, height)
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--window-size={window},{height}",
                    "--virtual-time-budget=3000", f"--screenshot={png}", url],
                   check=True, capture_output=True, timeout=120)


def overflow(browser: str, site: Path, base: str, page: Path, width: int,
             height: int) -> tuple[int, str]:
    """Pixels ``page`` is wider than a ``width``-px viewport, and the elements sticking out."""
    probe = page.with_name(f".probe-{page.name}")
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
    try:
        url, window = _url(site, base, probe, width, height)
        done = subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--window-size={window},{height}",
             "--virtual-time-budget=3000", "--dump-dom", url],
            check=True, capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="milterkit-overflow">(-?\d+)\|([^<]*)</pre>', done.stdout)
    if found is None:
        raise RuntimeError(f"{page.name}: the probe did not run at {width} px")
    return int(found.group(1)), html.unescape(found.group(2))


def main(argv: list[str] | None = None) -> int:
    """Screenshot and check the pages; 1 if any scrolls sideways."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", default=list(PAGES), metavar="PAGE",
                        help=f"pages without .html (default: {' '.join(PAGES)})")
    parser.add_argument("--html", type=Path, help="a built site (default: build one)")
    parser.add_argument("--out", type=Path, default=Path("docs/_build/screenshots"),
                        help="where the PNGs go (default docs/_build/screenshots)")
    parser.add_argument("--no-png", action="store_true", help="only check, take no screenshots")
    args = parser.parse_args(argv)
    browser = chromium()
    with tempfile.TemporaryDirectory(prefix="milterkit-docs-") as tmp, \
            contextlib.ExitStack() as stack:
        site = (args.html if args.html is not None else build(Path(tmp) / "html")).resolve()
        base = stack.enter_context(serving(site))
        args.out.mkdir(parents=True, exist_ok=True)
        failures = 0
        for name in args.pages:
            page = site / f"{name}.html"
            if not page.is_file():
                print(f"{name}: no such page in {site}")
                failures += 1
                continue
            for width, height in WIDTHS.items():
                if not args.no_png:
                    screenshot(browser, site, base, page, width, height,
                               args.out / f"{name}-{width}.png")
                extra, culprits = overflow(browser, site, base, page, width, height)
                verdict = "ok" if extra <= 0 else f"SCROLLS SIDEWAYS by {extra} px: {culprits}"
                print(f"{name:<16} {width:>5} px  {verdict}", flush=True)
                failures += extra > 0
        for frame in site.glob(".frame-*.html"):
            frame.unlink()
    if not args.no_png:
        print(f"screenshots in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
