"""The docs site in a real browser: build it (docs/build.py), serve _docs/ on 127.0.0.1, drive headless Chromium.

Checks: every page loads with no console errors, every image loaded, nothing Quarto-only leaks as text, the
version is on every page, sidebar + previous/next navigation in course order, offline search finds each chapter,
every internal link (and anchor) resolves.  Screenshots of three pages go to $IMGCLS_DOCS_SCREENSHOTS
(default _docs_screenshots/), a CI artefact.

A fresh _docs/ (its .buildstamp.json newer than every notebook, docs/ file and module) is re-used, not rebuilt;
IMGCLS_DOCS_REBUILD=1 forces a build.  IMGCLS_DOCS_NBS / IMGCLS_DOCS_SITE point the test at other notebooks/output.
"""
import functools, http.server, json, os, re, shutil, subprocess, sys, threading, time, urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlparse, unquote
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get('IMGCLS_DOCS_SITE', ROOT/'_docs'))         # overrides: to test the builder on other notebooks
NBS = Path(os.environ.get('IMGCLS_DOCS_NBS', ROOT/'nbs'))
SHOTS = Path(os.environ.get('IMGCLS_DOCS_SCREENSHOTS', ROOT/'_docs_screenshots'))
CHROMIUM = shutil.which('chromium') or ('/usr/bin/chromium' if Path('/usr/bin/chromium').exists() else None)
CHROMEDRIVER = shutil.which('chromedriver') or ('/usr/bin/chromedriver' if Path('/usr/bin/chromedriver').exists() else None)

try: import selenium  # noqa: F401
except ImportError: selenium = None

pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason='headless browser test needs Debian chromium + chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)'),
    pytest.mark.skipif(selenium is None, reason='the browser test needs the selenium package (pip install selenium)'),
]

import importlib.util  # noqa: E402
_spec = importlib.util.spec_from_file_location('imgcls_docs_build', ROOT/'docs'/'build.py')
docs_build = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(docs_build)   # page names, notebook order


def _version():
    return re.search(r'__version__\s*=\s*["\']([^"\']+)', (ROOT/'imgcls'/'__init__.py').read_text()).group(1)

def _chapters():
    "(notebook, page name, title) of every chapter in course order (index.ipynb is the home page)."
    import nbformat
    res = []
    for p in docs_build.course_notebooks(NBS):
        rel = p.relative_to(NBS)
        if rel.as_posix() == 'index.ipynb': continue
        fm = docs_build.frontmatter(nbformat.read(p, 4))
        res.append((rel.as_posix(), docs_build.page_name(rel), str(fm.get('title') or '')))
    return res


# ---------------------------------------------------------------------------------------------------------------
def _fresh():
    "True when _docs/ was built (by docs/build.py, from NBS) after every input changed: no need to build again."
    stamp = SITE/'.buildstamp.json'
    if os.environ.get('IMGCLS_DOCS_REBUILD') or not stamp.exists(): return False
    info = json.loads(stamp.read_text())
    if info.get('nbs') != str(NBS.resolve()): return False
    if info.get('notebooks') != [p.relative_to(NBS).as_posix() for p in docs_build.course_notebooks(NBS)]: return False
    inputs = [*NBS.rglob('*.ipynb'), *(ROOT/'docs').glob('*.py'), *(ROOT/'docs'/'_static').glob('*'),
              *(ROOT/'imgcls').glob('*.py'), ROOT/'settings.ini']
    return stamp.stat().st_mtime >= max(p.stat().st_mtime for p in inputs)

@pytest.fixture(scope='module')
def site():
    "The site: re-used when fresh (`make test` builds it just before pytest), else built now."
    if _fresh():
        print('re-using the fresh site in', SITE, json.loads((SITE/'.buildstamp.json').read_text()).get('seconds'), 's build')
        return SITE
    t = time.time()
    r = subprocess.run([sys.executable, str(ROOT/'docs'/'build.py'), '--nbs', str(NBS), '--out', str(SITE)],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    print(r.stdout[-4000:], r.stderr[-4000:])
    assert r.returncode == 0, f'docs/build.py failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    print(f'site built in {time.time() - t:.1f}s')
    return SITE

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture(scope='module')
def base_url(site):
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(site)))
    th = threading.Thread(target=srv.serve_forever, daemon=True); th.start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown(); srv.server_close()

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
              '--no-first-run', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
              '--window-size=1280,900', f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}']:
        o.add_argument(a)
    o.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def _load(d, url):
    "Open `url`, wait for it (and MathJax, and every image) to finish; return the SEVERE console messages."
    d.get_log('browser')                                  # drop what earlier pages logged
    d.get(url)
    d.set_script_timeout(30)
    d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const imgs = Array.from(document.images);
        imgs.forEach(i => { i.loading = 'eager'; });
        const waitImgs = Promise.all(imgs.map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })));
        const mj = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
        Promise.all([waitImgs, mj]).then(() => setTimeout(done, 150), () => setTimeout(done, 150));
    """)
    return [e for e in d.get_log('browser') if e.get('level') == 'SEVERE']

def _site_pages(site):
    return sorted(p.relative_to(site).as_posix() for p in site.rglob('*.html') if '_static' not in p.parts)


# ---------------------------------------------------------------------------------------------------------------
def test_site_has_every_chapter_and_module(site):
    pages = set(_site_pages(site))
    assert 'index.html' in pages and 'search.html' in pages
    for nb, name, _ in _chapters(): assert f'{name}.html' in pages, f'no page for {nb}'
    import ast
    for py in sorted((ROOT/'imgcls').glob('*.py')):
        if py.name.startswith('_'): continue
        m = py.stem
        assert f'api/{m}.html' in pages, f'no API page for imgcls.{m}'
        html = (site/'api'/f'{m}.html').read_text(encoding='utf-8')
        names = next((ast.literal_eval(n.value) for n in ast.parse(py.read_text()).body if isinstance(n, ast.Assign)
                      and any(getattr(t, 'id', '') == '__all__' for t in n.targets)), [])
        defs = {n.name for n in ast.parse(py.read_text()).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        missing = [n for n in names if n in defs and f'id="imgcls.{m}.{n}"' not in html]   # functions and classes
        assert not missing, f'api/{m}.html lacks {missing}'
        # each documented function/class shows its signature and its docstring's first line
        for node in ast.parse(py.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names and ast.get_docstring(node):
                first = re.sub(r'`', '', ast.get_docstring(node).split('\n')[0])[:40]
                text = re.sub(r'<[^>]+>', '', html).replace('&#8217;', "'").replace('&quot;', '"').replace('&amp;', '&')
                words = re.findall(r'\w{3,}', first)[:3]                     # (Sphinx curls quotes: compare words)
                assert all(w in text for w in words), f'api/{m}.html: docstring of {node.name} missing ({words})'


def test_pages_load_clean(site, base_url, browser):
    "Every page: no console errors, every image loaded, version shown, no Quarto/nbdev syntax leaking as text."
    version, problems, n_img = _version(), [], 0
    leaks = re.compile(r'::: ?\{|\{\.callout|#\| |\{target=|output-file:|<!-- WARNING|```\{')
    for rel in _site_pages(site):
        errs = _load(browser, base_url + rel)
        problems += [f'{rel}: console {e["message"][:300]}' for e in errs]
        bad = browser.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        n_img += browser.execute_script('return document.images.length')
        problems += [f'{rel}: image did not load: {s}' for s in bad]
        text = browser.execute_script('return document.body.innerText')
        if f'{version}' not in text: problems.append(f'{rel}: imgcls version {version} not shown')
        if not rel.startswith('_modules/'):
            main = browser.execute_script("const m = document.querySelector('main') || document.body; return m.innerText")
            problems += [f'{rel}: leaked markup {m.group(0)!r} near {main[max(0, m.start()-60):m.end()+60]!r}'
                         for m in leaks.finditer(main)]
    print(f'{len(_site_pages(site))} pages, {n_img} images')
    assert not problems, '\n'.join(problems)


def test_chapter_outputs_and_navigation(site, base_url, browser):
    "Chapters in file-name order in the sidebar, previous/next links, and their image outputs on the page."
    import nbformat
    chapters = _chapters()
    _load(browser, base_url + 'index.html')
    side = browser.execute_script(
        "return Array.from(document.querySelectorAll('.bd-sidebar-primary a.reference.internal')).map(a => a.getAttribute('href'))")
    order = [h.split('#')[0].removesuffix('.html') for h in side]
    pos = [order.index(name) for _, name, _ in chapters if name in order]
    assert len(pos) == len(chapters), f'sidebar {order} lacks some of {[c[1] for c in chapters]}'
    assert pos == sorted(pos), f'sidebar not in course order: {order}'
    for i, (nb, name, title) in enumerate(chapters):
        _load(browser, base_url + f'{name}.html')
        h1 = browser.execute_script("return document.querySelector('main h1').innerText")
        if title: assert title.split(':')[0] in h1, (name, h1, title)
        prev = browser.execute_script("const a = document.querySelector('.prev-next-area a.left-prev'); return a && a.getAttribute('href')")
        nxt = browser.execute_script("const a = document.querySelector('.prev-next-area a.right-next'); return a && a.getAttribute('href')")
        assert prev, f'{name}: no previous-page link'
        assert nxt, f'{name}: no next-page link'
        want_prev = 'index.html' if i == 0 else f'{chapters[i-1][1]}.html'
        assert prev.split('#')[0].endswith(want_prev), (name, prev, want_prev)
        if i + 1 < len(chapters): assert nxt.split('#')[0].endswith(f'{chapters[i+1][1]}.html'), (name, nxt)
        # every image output committed in the notebook is on the page
        started = json.loads((site/'.buildstamp.json').read_text()).get('started', 0)
        if (NBS/nb).stat().st_mtime > started:
            print(f'{nb} changed after the site was built: its outputs are not compared'); continue
        src = nbformat.read(NBS/nb, 4)
        n_nb = sum(1 for c in src.cells if c.cell_type == 'code' for o in c.get('outputs', [])
                   if any(k.startswith('image/') for k in o.get('data', {})))
        n_page = browser.execute_script("return document.querySelectorAll('main .cell_output img').length")
        assert n_page >= n_nb, f'{name}: {n_nb} image outputs in the notebook, {n_page} on the page'


def _term(title):
    words = [w for w in re.findall(r'[A-Za-z]{4,}', title) if w.lower() not in {'with', 'from', 'that', 'this', 'what', 'your', 'work'}]
    return max(words, key=len) if words else None

def test_offline_search_finds_each_chapter(site, base_url, browser):
    from selenium.webdriver.support.ui import WebDriverWait
    checked = []
    for nb, name, title in _chapters():
        term = _term(title)
        if not term: continue
        assert not _load(browser, base_url + f'search.html?q={term}')
        WebDriverWait(browser, 20).until(lambda d: d.execute_script(
            "const s = document.querySelector('#search-results'); return s && /found|did not match/i.test(s.innerText)"))
        hits = browser.execute_script(
            "return Array.from(document.querySelectorAll('#search-results ul.search li a')).map(a => a.getAttribute('href'))")
        assert any(h.split('?')[0].split('#')[0].endswith(f'{name}.html') for h in hits), f'search {term!r}: {name} not in {hits}'
        checked.append((term, name))
    assert checked, 'no chapter to search for'
    print('searched:', checked)


def test_internal_links_resolve(site, base_url, browser):
    "Crawl every page from the home page; every same-site href/src must exist (200), and its #anchor too."
    base = base_url
    ids_cache, seen, todo, broken, bad_anchor = {}, set(), ['index.html'], [], []
    def ids(rel):
        if rel not in ids_cache:
            html = (site/rel).read_text(encoding='utf-8', errors='ignore')
            ids_cache[rel] = set(re.findall(r'\bid="([^"]+)"', html)) | set(re.findall(r'\bname="([^"]+)"', html))
        return ids_cache[rel]
    while todo:
        rel = todo.pop()
        if rel in seen: continue
        seen.add(rel)
        html = (site/rel).read_text(encoding='utf-8', errors='ignore')
        page_url = base + rel
        for attr, url in re.findall(r'\b(href|src)="([^"]+)"', html):
            full = urllib.parse.urljoin(page_url, url.replace('&amp;', '&'))
            if not full.startswith(base): continue
            target, frag = urldefrag(full)
            trel = unquote(urlparse(target).path)[len(urlparse(base).path):] or 'index.html'
            if trel.endswith('/'): trel += 'index.html'
            f = site/trel
            if not f.is_file():
                try: ok = urllib.request.urlopen(target, timeout=10).status == 200
                except Exception: ok = False
                if not ok: broken.append(f'{rel}: {attr}={url!r}'); continue
            if trel.endswith('.html'):
                if frag and frag not in ids(trel): bad_anchor.append(f'{rel}: {url!r}')
                if '_static' not in trel and trel not in seen: todo.append(trel)
    print(f'crawled {len(seen)} pages')
    missing = set(_site_pages(site)) - seen - {'genindex.html', 'py-modindex.html', 'search.html'}
    assert not broken, 'broken links:\n' + '\n'.join(broken)
    assert not bad_anchor, 'links to missing anchors:\n' + '\n'.join(sorted(set(bad_anchor)))
    assert not {m for m in missing if not m.startswith('_modules/')}, f'pages no link reaches: {missing}'


def test_screenshots(site, base_url, browser):
    "Full-page screenshots of the home page, the chapter with the most figures, and an API page (CI artefact)."
    SHOTS.mkdir(parents=True, exist_ok=True)
    chapters = _chapters()
    def n_img(name): return len(re.findall(r'<img ', (site/f'{name}.html').read_text(encoding='utf-8')))
    fig = max(chapters, key=lambda c: n_img(c[1]))[1] if chapters else 'index'
    api = sorted(p.relative_to(site).as_posix() for p in (site/'api').glob('*.html'))[0]
    saved = []
    for rel, out in (('index.html', 'home.png'), (f'{fig}.html', f'chapter_{fig}.png'), (api, 'api_' + Path(api).stem + '.png')):
        _load(browser, base_url + rel)
        h = browser.execute_script('return Math.min(document.body.scrollHeight, 6000)')
        browser.set_window_size(1280, max(900, h))
        browser.save_screenshot(str(SHOTS/out)); saved.append(SHOTS/out)
        browser.set_window_size(1280, 900)
    for p in saved: assert p.stat().st_size > 10_000, p
    print('screenshots:', [str(p) for p in saved])
