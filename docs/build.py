"""Build the imgcls docs site into _docs/, offline and without Quarto.

    .venv/bin/python docs/build.py            # incremental (re-uses _proc/ and Sphinx's environment)
    .venv/bin/python docs/build.py --clean    # from scratch
    .venv/bin/python docs/build.py --strict   # exit 1 on any notebook-processing problem or Sphinx warning

Three steps (see docs/README.md):
1. nbdev's own notebook processing, through its Python API `nbdev.serve.proc_nbs` -> _proc/
   (frontmatter, show_doc cells, doc links, hidden/exported cells: exactly what `nbdev_docs` hands to Quarto).
2. An adapter that turns what nbdev leaves for Quarto into what myst-nb renders: frontmatter -> page title and
   intro, Quarto cell options (`echo`, `output`, `include`, `code-fold`, `code-summary`, `fig-cap`), callouts
   (`::: {.callout-note}`) -> MyST admonitions, `show_doc` output -> real sections with a local source link,
   links into the site -> links between pages.  Result: docs/_build/src/.
3. Sphinx + myst-nb + sphinx-book-theme renders the committed outputs (nb_execution_mode='off') into _docs/,
   with one autodoc API page per exported module, Sphinx's offline search and a local MathJax.
"""
from __future__ import annotations
import argparse, ast, configparser, json, os, re, shutil, sys, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT/'docs'
WORK = DOCS/'_build'
SRC = WORK/'src'
DOCTREES = WORK/'doctrees'

_ini = configparser.ConfigParser()
_ini.read(ROOT/'settings.ini')
CFG = _ini['DEFAULT']
LIB = CFG.get('lib_path', 'imgcls')
NBS = ROOT/CFG.get('nbs_path', 'nbs')
OUT = ROOT/CFG.get('doc_path', '_docs')
SITE_URL = (CFG.get('doc_host', '') + CFG.get('doc_baseurl', '')).rstrip('/')
GIT_URL = CFG.get('git_url', '').rstrip('/')

PROBLEMS: list[str] = []          # notebook-processing problems, reported at the end (and fatal with --strict)

def log(msg): print(f'[docs] {msg}', flush=True)

# ---------------------------------------------------------------------------------------------------------------
# 0. Which notebooks, in which order
# ---------------------------------------------------------------------------------------------------------------
def course_notebooks(nbs: Path) -> list[Path]:
    "Notebooks as nbdev sees them (no `_`/`.` files or folders), in file-name (= course) order; index first."
    res = []
    for p in sorted(nbs.rglob('*.ipynb')):
        rel = p.relative_to(nbs)
        if any(part.startswith(('_', '.')) for part in rel.parts): continue
        res.append(p)
    return sorted(res, key=lambda p: (p.relative_to(nbs).as_posix() != 'index.ipynb', p.relative_to(nbs).as_posix()))

def page_name(rel: Path) -> str:
    "nbdev's page name for a notebook: `01_pixels.ipynb` -> `pixels` (as in its `output-file`)."
    return (rel.parent/re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('').as_posix()

# ---------------------------------------------------------------------------------------------------------------
# 1. nbdev processing (proc_nbs), robust to one bad notebook
# ---------------------------------------------------------------------------------------------------------------
def run_proc_nbs(nbs: Path, force: bool) -> Path:
    "Run `nbdev.serve.proc_nbs` in-process; a notebook nbdev cannot process is reported, not fatal."
    import nbdev.serve, nbdev.serve_drv, nbdev.processors as P

    class exec_show_docs_safe(P.exec_show_docs):
        """nbdev's `exec_show_docs`, except that a cell mixing imports with other code only runs its imports
        (nbdev would run all of it -- training loops included -- and warns about it) and a failing cell is
        reported instead of aborting the whole site."""
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, 'k'): return
            fm = getattr(self.nb, 'frontmatter_', {})
            if P.str2bool(fm.get('skip_showdoc', False)): return
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                if not P._do_eval(cell): return
            src = cell.source
            if not (cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}) and not P._show_docs(cell.parsed_()):
                stmts = list(cell.parsed_() or [])               # top-level statements
                imps = [n for n in stmts if isinstance(n, (ast.Import, ast.ImportFrom))]
                if len(imps) < len(stmts): src = '\n'.join(ast.unparse(n) for n in imps)
                if not src.strip(): return
            if src == cell.source: self.k.cell(cell)        # as nbdev does: outputs (show_doc) go into the cell
            else: self.k.run(src)                            # mixed cell: its imports only, outputs kept as committed
            if self.k.exc:
                PROBLEMS.append(f'{Path(getattr(self.nb, "path_", "?")).name}: cell {cell.idx_} failed while '
                                f'rendering show_doc ({type(self.k.exc).__name__}: {self.k.exc}); source:\n    '
                                + '\n    '.join(cell.source.splitlines()[:6]))
                self.k.exc = None

    class Filter(P.FilterDefaults):
        def base_procs(self):
            return [exec_show_docs_safe if p is P.exec_show_docs else p for p in super().base_procs()]

    class FilterNoExec(P.FilterDefaults):
        def base_procs(self): return [p for p in super().base_procs() if p is not P.exec_show_docs]

    orig_main = nbdev.serve_drv.main
    def safe_main(o):
        src, dst, x = o
        try: return orig_main(o)
        except Exception as e:
            PROBLEMS.append(f'{src.name}: nbdev processing failed ({type(e).__name__}: {str(e)[:300]}); '
                            'rendered without executing its show_doc cells')
            if src.suffix != '.ipynb': return None
            try: return orig_main((src, dst, FilterNoExec))
            except Exception as e2: PROBLEMS.append(f'{src.name}: cannot be processed at all ({type(e2).__name__}: {e2})')

    # proc_nbs skips a notebook older than the _proc/ folder's own mtime, which it touches at the end of every run:
    # a notebook saved while a previous run was going would never be processed again.  Drop stale copies first.
    proc = ROOT/'_proc'
    for nb in course_notebooks(nbs):
        d = proc/nb.relative_to(nbs)
        if d.exists() and d.stat().st_mtime < nb.stat().st_mtime: d.unlink()
    old = nbdev.serve.FilterDefaults, nbdev.serve_drv.main
    nbdev.serve.FilterDefaults, nbdev.serve_drv.main = Filter, safe_main
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')      # nbdev's "imports and other code" warning: handled above
            return nbdev.serve.proc_nbs(path=str(nbs), n_workers=0, force=force)   # in-process: 2-core machine
    finally:
        nbdev.serve.FilterDefaults, nbdev.serve_drv.main = old

# ---------------------------------------------------------------------------------------------------------------
# 2. The adapter: what nbdev leaves for Quarto -> what myst-nb renders
# ---------------------------------------------------------------------------------------------------------------
_re_opt = re.compile(r'^\s*#\|\s*(.*?)\s*$')
_re_fence = re.compile(r'^\s*(`{3,}|~{3,})')

def _optval(v: str):
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in '"\'': return v[1:-1]
    if v.lower() in ('true', 'yes'): return True
    if v.lower() in ('false', 'no'): return False
    return v

def split_options(src: str):
    "Leading Quarto/nbdev `#| key: value` lines of a code cell -> (options dict, remaining source)."
    lines, opts, i = src.splitlines(), {}, 0
    while i < len(lines):
        m = _re_opt.match(lines[i])
        if not m:
            if lines[i].strip() == '': i += 1; continue
            break
        body = m.group(1)
        if ':' in body.split(' ')[0] or re.match(r'^[\w-]+\s*:', body):
            k, v = body.split(':', 1); opts[k.strip()] = _optval(v)
        elif body: opts[body.split()[0]] = ' '.join(body.split()[1:]) or True
        i += 1
    return opts, '\n'.join(lines[i:]).strip('\n')

class Page:
    "Where a page lives, for relative links."
    def __init__(self, name: str): self.name = name
    def rel(self, target: str) -> str:
        "Relative URL from this page to `target` (a path relative to the site root)."
        return os.path.relpath(target, os.path.dirname(self.name) or '.').replace(os.sep, '/')

# --- callouts and fenced divs ---------------------------------------------------------------------------------
_re_div_open = re.compile(r'^(\s*):{3,}\s*(\{[^}]*\}|[\w.-]+)\s*$')
_re_div_close = re.compile(r'^\s*:{3,}\s*$')
_CALLOUTS = {'note': 'note', 'tip': 'tip', 'warning': 'warning', 'caution': 'caution', 'important': 'important'}

def _parse_attrs(s: str):
    s = s.strip().strip('{}')
    classes = re.findall(r'(?:^|\s)\.([\w-]+)', s)
    kv = {k: (a if a else b) for k, a, b in re.findall(r'([\w-]+)\s*=\s*(?:"([^"]*)"|(\S+))', s)}
    if not classes and not kv and s and not s.startswith(('.', '#')):              # `::: note`, MyST's `:::{note}`
        classes = [f'callout-{s}' if s in _CALLOUTS else s]
    return classes, kv

def _div_tree(lines):
    "Parse Pandoc fenced divs (`:::`) into a tree; code fences are opaque; unbalanced fences are tolerated."
    root, stack, fence = [], [], None
    cur = root
    for line in lines:
        if fence:
            cur.append(line)
            if re.match(rf'^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$', line): fence = None
            continue
        m = _re_fence.match(line)
        if m: fence = m.group(1); cur.append(line); continue
        m = _re_div_open.match(line)
        if m:
            div = {'attrs': m.group(2), 'children': []}
            cur.append(div); stack.append(cur); cur = div['children']; continue
        if _re_div_close.match(line):
            if stack: cur = stack.pop()
            continue                             # a stray closing fence is dropped
        cur.append(line)
    return root

def _depth(items): return max([1 + _depth(i['children']) for i in items if isinstance(i, dict)] or [0])

def _emit(items, out):
    for it in items:
        if not isinstance(it, dict): out.append(it); continue
        classes, kv = _parse_attrs(it['attrs'])
        colons = ':' * (2 + _depth([it]))
        kids = list(it['children'])
        kind = next((c[len('callout-'):] for c in classes if c.startswith('callout-')), None)
        if kind is not None:
            title = kv.get('title')
            first = next((j for j, l in enumerate(kids) if not (isinstance(l, str) and not l.strip())), None)
            if title is None and first is not None and isinstance(kids[first], str) and re.match(r'^#{1,6}\s+\S', kids[first]):
                title = re.sub(r'^#{1,6}\s+', '', kids[first]).strip(); del kids[first]
            adm = _CALLOUTS.get(kind, 'note')
            extra = ' dropdown' if str(kv.get('collapse', '')).lower() == 'true' else ''
            if title: out += [f'{colons}{{admonition}} {title}', f':class: {adm}{extra}']
            else: out += [f'{colons}{{{adm}}}'] + ([f':class: {extra.strip()}'] if extra else [])
            out.append(''); _emit(kids, out); out += ['', colons]
        elif classes:
            out += [f'{colons}{{container}} {" ".join(classes)}', '']; _emit(kids, out); out += ['', colons]
        else: _emit(kids, out)                    # attribute-only div (e.g. nbdev's boxify): keep the content

def convert_divs(md: str) -> str:
    if ':::' not in md: return md
    out = []; _emit(_div_tree(md.split('\n')), out)
    return '\n'.join(out)

# --- links --------------------------------------------------------------------------------------------------------
_re_mdlink = re.compile(r'(?<!!)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)')

def slugify(text: str) -> str:
    "MyST's heading slug (myst_heading_anchors), for a heading's text or an nbdev/Quarto anchor."
    from myst_parser.mdit_to_docutils.base import default_slugify
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', text)          # [text](url) -> text
    return default_slugify(re.sub(r'[`*]|<[^>]+>', '', text).strip())

def heading_slugs(md: str) -> set:
    res, fence = set(), None
    for line in md.split('\n'):
        m = _re_fence.match(line)
        if m and (fence is None or m.group(1)[0] == fence): fence = None if fence else m.group(1)[0]; continue
        if fence: continue
        m = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if m: res.add(slugify(m.group(1)))
    return res

class Linker:
    """Links between pages. nbdev's `add_links` points symbol names at absolute doc_host URLs
    (`https://<host>/<baseurl>/core.html#check`); authors link notebooks (`01_pixels.ipynb`).  Both become MyST
    links to the page's source (`core.ipynb#slug`) so Sphinx resolves and checks them; a link to a page that
    does not exist (yet) becomes plain text and is reported."""
    def __init__(self, nb_pages: dict, suffix: dict, slugs: dict, modules: set):
        self.nb_pages, self.suffix, self.slugs, self.modules = nb_pages, suffix, slugs, modules
        self.dangling: list = []

    def resolve(self, page: Page, path: str):
        "Page name a link path refers to, or None."
        cands = [path, os.path.normpath(os.path.join(os.path.dirname(page.name), path)).replace(os.sep, '/')]
        for c in cands:
            stem = re.sub(r'\.(html|ipynb|qmd|md)$', '', c)
            for name in (self.nb_pages.get(c), stem, self.nb_pages.get(stem + '.ipynb')):
                if name in self.suffix: return name

    def fix(self, md: str, page: Page) -> str:
        # show_doc source links: [source](https://github.com/<repo>/blob/<branch>/imgcls/x.py#L12){...}
        # -> the local, highlighted source page that sphinx.ext.viewcode writes (the site works offline)
        def src_link(m):
            path = m.group('path')
            if path[:-3].replace('/', '.') in self.modules:
                href = page.rel('_modules/' + path[:-3] + '.html') + (f'#{m.group("obj")}' if m.group('obj') else '')
            else: href = m.group('url')
            return f'<a class="showdoc-source" href="{href}">source</a>'
        md = re.sub(r'\[source\]\((?P<url>https?://[^)\s]+/blob/[^/)]+/(?P<path>[\w/]+\.py)(?:#L\d+)?)\)(\{[^}]*\})?'
                    r'(?P<rest>\s*\n\s*#{1,6}\s+(?P<obj>[\w.]+))?',
                    lambda m: src_link(m) + (m.group('rest') or ''), md)
        def site(m):
            text, url = m.group(1), m.group(2)
            if '](' in text:       # nbdev's linkify also links names inside an author's link text: no nested links
                text = re.sub(r'\[([^\[\]]*)\]\([^)\s]*\)', r'\1', text)
                m = re.match(r'(.*)', f'[{text}]({url})')
            path, _, anchor = url.partition('#')
            local = bool(SITE_URL) and path.startswith(SITE_URL + '/')
            if local: path = path[len(SITE_URL) + 1:]
            elif re.match(r'^[a-z][a-z0-9+.-]*:', path) or not path: return m.group(0)
            if not re.search(r'\.(html|ipynb|qmd)$', path): return m.group(0)
            target = self.resolve(page, path)
            if target is None:
                self.dangling.append(f'{page.name}: link to missing page {url!r} ("{text}") shown as plain text')
                return text
            slug = slugify(anchor) if anchor else ''
            href = page.rel(target + self.suffix[target])
            return f'[{text}]({href}' + (f'#{slug}' if slug and slug in self.slugs.get(target, ()) else '') + ')'
        md = _re_mdlink.sub(site, md)
        # Pandoc link attributes Quarto understands but MyST would print: [x](y){target="_blank" ...}
        md = re.sub(r'(\]\([^)]*\))\{[^}]*=[^}]*\}', r'\1', md)
        return md

# --- notebooks ----------------------------------------------------------------------------------------------------
def _md_cell(src):
    import nbformat
    return nbformat.v4.new_markdown_cell(src)

def _text(x): return ''.join(x) if isinstance(x, list) else (x or '')

def showdoc_md(md: str) -> str:
    "A show_doc markdown output as page content: no leading rule (docutils forbids a section ending on one)."
    md = re.sub(r'^\s*---\s*\n', '', md)
    return md

def frontmatter(nb) -> dict:
    import yaml
    if nb.cells and nb.cells[0].cell_type == 'raw':
        m = re.match(r'^\s*---\s*\n(.*?)\n---\s*$', nb.cells[0].source.strip() + '\n', flags=re.S)
        if m:
            try: return yaml.safe_load(m.group(1)) or {}
            except Exception as e: PROBLEMS.append(f'bad frontmatter YAML: {e}')
    return {}

def adapt_notebook(nb, page: Page, fallback_title: str, extra_md: str = ''):
    "Turn one nbdev-processed notebook into a myst-nb friendly one; returns (notebook, frontmatter)."
    import nbformat
    fm = frontmatter(nb)
    if fm: nb.cells = nb.cells[1:]
    title = str(fm.get('title') or fallback_title)
    desc = fm.get('description')
    head = f'# {title}\n'
    if desc: head += f'\n{{.page-description}}\n{desc}\n'
    cells = [_md_cell(head)]
    for cell in nb.cells:
        if cell.cell_type == 'markdown':
            if cell.source.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            cell.source = convert_divs(cell.source)
            cells.append(cell); continue
        if cell.cell_type == 'raw':
            cells.append(cell); continue
        opts, src = split_options(cell.source)
        cell.source = src
        if re.fullmatch(r'(\s*show_doc\([^\n]*\)\s*)+', src) and 'output' not in opts:
            opts.update({'output': 'asis', 'echo': False})     # what nbdev's clean_show_doc does (raw notebooks)
        if opts.get('include') is False: continue
        tags = set(cell.metadata.get('tags', []))
        if opts.get('echo') is False: tags.add('remove-input')
        if opts.get('output') is False: tags.add('remove-output')
        fold = opts.get('code-fold')
        if fold is True or fold == 'true': tags.add('hide-input')
        if opts.get('code-summary') and 'hide-input' in tags:
            cell.metadata.setdefault('mystnb', {})['code_prompt_show'] = str(opts['code-summary'])
        after = []
        if opts.get('output') == 'asis':
            mds = [showdoc_md(_text(o['data']['text/markdown'])) if re.match(r'^\s*show_doc\(', src)
                   else _text(o['data']['text/markdown'])
                   for o in cell.get('outputs', []) if 'text/markdown' in o.get('data', {})]
            cell.outputs = [o for o in cell.get('outputs', []) if 'text/markdown' not in o.get('data', {})]
            after = [_md_cell(convert_divs(m)) for m in mds if m.strip()]
            if 'remove-input' in tags and not cell.outputs: cells += after; continue
        if not src.strip() and not cell.get('outputs'): cells += after; continue
        if tags: cell.metadata['tags'] = sorted(tags)
        cells.append(cell); cells += after
        cap = opts.get('fig-cap') or opts.get('tbl-cap')
        if cap: cells.append(_md_cell(f'{{.figure-caption}}\n{cap}'))
    if extra_md: cells.append(_md_cell(extra_md))
    nb.cells = cells
    w = nb.metadata.pop('widgets', None)
    if w and any(v.get('state') for v in w.values() if isinstance(v, dict)):
        PROBLEMS.append(f'{page.name}: ipywidgets state dropped (widgets need JavaScript from a CDN; the site is offline)')
    nb.metadata.setdefault('language_info', {'name': 'python', 'pygments_lexer': 'ipython3'})
    return nb, fm

def write_if_changed(path: Path, text: str, written: set):
    path.parent.mkdir(parents=True, exist_ok=True)
    written.add(path.resolve())
    if path.exists() and path.read_text(encoding='utf-8') == text: return
    path.write_text(text, encoding='utf-8')

def default_exports(nb_path: Path):
    "The `#| default_exp` module of a source notebook, if any."
    import nbformat
    try: cells = nbformat.read(nb_path, 4).cells
    except Exception: return None
    for c in cells:
        if c.cell_type == 'code':
            m = re.search(r'^\s*#\|\s*default_exp\s+(\S+)', c.source, flags=re.M)
            if m: return m.group(1)

def lib_modules():
    "Exported modules to document: imgcls/*.py except private ones (_modidx, __init__)."
    lib = ROOT/LIB
    return [f'{LIB}.' + p.relative_to(lib).with_suffix('').as_posix().replace('/', '.')
            for p in sorted(lib.rglob('*.py')) if not any(s.startswith('_') for s in p.relative_to(lib).parts)]

def fix_links(nb, page: Page, linker: Linker):
    for cell in nb.cells:
        if cell.cell_type == 'markdown': cell.source = linker.fix(cell.source, page)
        for o in cell.get('outputs', []):
            d = o.get('data', {})
            if 'text/markdown' in d: d['text/markdown'] = linker.fix(_text(d['text/markdown']), page)

def md_of(nb) -> str:
    return '\n\n'.join(c.source for c in nb.cells if c.cell_type == 'markdown')

def build_sources(nbs: Path, proc: Path) -> dict:
    import nbformat
    notebooks = course_notebooks(nbs)
    rels = [p.relative_to(nbs) for p in notebooks]
    names = {}
    for rel in rels:
        n = page_name(rel)
        if n in names.values() or n.startswith('api/') or n in ('genindex', 'search', 'py-modindex'):
            n = rel.with_suffix('').as_posix()         # two notebooks with the same nbdev name: keep them apart
        names[rel.as_posix()] = n
    modules = lib_modules()
    mod_page = {}
    for p, rel in zip(notebooks, rels):
        m = default_exports(p)
        if m: mod_page[f'{LIB}.{m}'] = names[rel.as_posix()]
    written: set = set()
    # pass 1: adapt every notebook (Quarto-isms -> MyST), in course order
    docs = {}                                     # page name -> (notebook, frontmatter, rel)
    for p, rel in zip(notebooks, rels):
        name = names[rel.as_posix()]
        pp = proc/rel
        try:
            if pp.exists():      # (a notebook re-saved while the build runs is a little newer than its copy: fine)
                nb = nbformat.read(pp, 4)
            else:
                PROBLEMS.append(f'{rel}: no processed copy in {proc.name}/; rendered from the raw notebook')
                nb = nbformat.read(p, 4)
        except Exception as e:                    # e.g. a notebook being written right now: skip it, say so
            PROBLEMS.append(f'{rel}: unreadable ({type(e).__name__}: {e}); left out of the site'); continue
        mod = next((m for m, pg in mod_page.items() if pg == name), None)
        extra = (f'\n---\n\n*The functions this chapter exports are listed in the API reference: '
                 f'[`{mod}`]({Page(name).rel("api/" + mod.split(".", 1)[1] + ".md")}).*') if mod in modules else ''
        nb, fm = adapt_notebook(nb, Page(name), fallback_title=name.replace('_', ' ').capitalize(), extra_md=extra)
        docs[name] = (nb, fm, rel)
    chapters = [(n, str(fm.get('title') or n), fm.get('description', '')) for n, (nb, fm, rel) in docs.items()
                if rel.as_posix() != 'index.ipynb']
    home = next((n for n, (nb, fm, rel) in docs.items() if rel.as_posix() == 'index.ipynb'), None)
    # API reference: one page per exported module
    api = {}
    for mod in modules:
        short = mod.split('.', 1)[1]
        chap = mod_page.get(mod)
        chap_title = next((t for n, t, _ in chapters if n == chap), chap)
        intro = (f'Everything `{mod}` exports, with signatures and docstrings. It is written in the chapter '
                 f'[{chap_title}](../{chap}.ipynb).') if chap else f'Everything `{mod}` exports, with signatures and docstrings.'
        api[f'api/{short}'] = (f'# `{mod}`\n\n{{.page-description}}\n{intro}\n\n```{{eval-rst}}\n.. automodule:: {mod}\n'
                               f'   :members:\n   :undoc-members:\n   :show-inheritance:\n```\n')
    # home page: nbs/index.ipynb, plus the course contents and the navigation (sidebar, previous/next)
    contents = '\n## Course contents\n\n' + '\n'.join(
        f'- [{t}]({n}.ipynb)' + (f': {d}' if d else '') for n, t, d in chapters) + '\n\nAPI reference: ' + \
        ', '.join(f'[`{LIB}.{a[4:]}`]({a}.md)' for a in api) + '.\n'
    toc = ('```{toctree}\n:hidden:\n:caption: Course\n:maxdepth: 1\n\n' + '\n'.join(n for n, _, _ in chapters) + '\n```\n\n'
           '```{toctree}\n:hidden:\n:caption: API reference\n:maxdepth: 1\n\n' + '\n'.join(api) + '\n```\n')
    if home:      # the course contents, unless the home page already links every chapter itself
        hm, nb_of = md_of(docs[home][0]), {n: rel.as_posix() for n, (_, _, rel) in docs.items()}
        unlinked = [n for n, _, _ in chapters if not re.search(rf'\]\((\./)?({re.escape(nb_of[n])}|{re.escape(n)}\.(html|ipynb))[)#]', hm)]
        docs[home][0].cells += ([_md_cell(contents)] if unlinked else []) + [_md_cell(toc)]
    else:
        PROBLEMS.append('nbs/index.ipynb does not exist: a placeholder home page was generated')
        api['index'] = f'# {CFG.get("title", LIB)}\n\n{{.page-description}}\n{CFG.get("description", "")}\n{contents}\n{toc}'
    # pass 2: links between pages, now that every page and its headings are known
    suffix = {**{n: '.ipynb' for n in docs}, **{n: '.md' for n in api}}
    slugs = {**{n: heading_slugs(md_of(nb)) for n, (nb, _, _) in docs.items()}, **{n: heading_slugs(t) for n, t in api.items()}}
    linker = Linker(names, suffix, slugs, set(modules))
    for n, (nb, fm, rel) in docs.items():
        fix_links(nb, Page(n), linker)
        write_if_changed(SRC/f'{n}.ipynb', nbformat.writes(nb), written)
    for n, text in api.items(): write_if_changed(SRC/f'{n}.md', text, written)
    PROBLEMS.extend(sorted(set(linker.dangling)))
    # assets the notebooks refer to (images next to them), copied as they are
    for f in nbs.rglob('*'):
        rel = f.relative_to(nbs)
        if f.is_file() and f.suffix.lower() in ('.png', '.jpg', '.jpeg', '.gif', '.svg', '.webp', '.csv') \
           and not any(s.startswith(('.', '_')) for s in rel.parts):
            dst = SRC/rel; written.add(dst.resolve())
            if not dst.exists() or dst.stat().st_mtime < f.stat().st_mtime:
                dst.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, dst)
    # drop sources of notebooks that no longer exist (renamed/deleted), so Sphinx forgets them
    for f in list(SRC.rglob('*')):
        if f.is_file() and f.resolve() not in written: f.unlink()
    return {'chapters': chapters, 'api': list(api), 'home': bool(home), 'notebooks': [r.as_posix() for r in rels]}

# ---------------------------------------------------------------------------------------------------------------
# 3. Sphinx
# ---------------------------------------------------------------------------------------------------------------
def find_mathjax():
    "A local MathJax 3 (`tex-chtml.js` and its fonts): $IMGCLS_MATHJAX_DIR or the sphinx-mathjax-offline package."
    cands = [os.environ.get('IMGCLS_MATHJAX_DIR', '')] + [str(Path(p)/'sphinx-mathjax-offline'/'static'/'mathjax') for p in sys.path if p]
    return next((Path(c) for c in cands if c and (Path(c)/'tex-chtml.js').is_file()), None)

def run_sphinx(out: Path, jobs: str, strict: bool) -> tuple[int, list[str]]:
    from sphinx.cmd.build import build_main
    os.environ['IMGCLS_DOCS_WORK'] = str(WORK)
    warnfile = WORK/'sphinx-warnings.txt'
    args = ['-b', 'html', '-c', str(DOCS), '-d', str(DOCTREES), '-j', jobs, '-q', '-w', str(warnfile), str(SRC), str(out)]
    if strict: args.insert(0, '-W')
    rc = build_main(args)
    warns = [l for l in warnfile.read_text().splitlines() if l.strip()] if warnfile.exists() else []
    return rc, warns

def remove_orphans(out: Path):
    "Sphinx never deletes the page of a notebook (or module) that is gone: do it, so no stale page is served."
    mods = {m.replace('.', '/') for m in lib_modules()}
    for f in list(out.rglob('*.html')):
        rel = f.relative_to(out)
        if rel.parts[0] == '_static' or rel.as_posix() in ('genindex.html', 'search.html', 'py-modindex.html'): continue
        if rel.parts[0] == '_modules': keep = len(rel.parts) == 2 or rel.relative_to('_modules').with_suffix('').as_posix() in mods
        else: keep = any((SRC/rel).with_suffix(x).exists() for x in ('.ipynb', '.md'))
        if not keep: log(f'    removing stale page {rel}'); f.unlink()

def uses_math(out: Path) -> bool:
    return any('mathjax/tex-chtml.js' in f.read_text(encoding='utf-8', errors='ignore') for f in out.rglob('*.html')
               if '_static' not in f.parts)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--clean', action='store_true', help='rebuild everything (_proc/, Sphinx environment, _docs/)')
    ap.add_argument('--strict', action='store_true', help='fail on notebook-processing problems and Sphinx warnings')
    ap.add_argument('--nbs', default=str(NBS), help='notebooks folder (default: settings.ini nbs_path)')
    ap.add_argument('--out', default=str(OUT), help='output folder (default: settings.ini doc_path, _docs/)')
    ap.add_argument('--jobs', default='auto', help="Sphinx parallel jobs (default 'auto')")
    a = ap.parse_args(argv)
    os.chdir(ROOT)
    for k, v in (('IMGCLS_OFFLINE', '1'), ('MPLBACKEND', 'Agg')): os.environ.setdefault(k, v)
    if not os.environ.get('IMGCLS_DATA') and (ROOT.parent/'shared'/'data').is_dir():
        os.environ['IMGCLS_DATA'] = str(ROOT.parent/'shared'/'data')
    nbs, out = Path(a.nbs).resolve(), Path(a.out).resolve()
    t0 = time.time()
    if a.clean:
        for d in (WORK, out): shutil.rmtree(d, ignore_errors=True)
    notebooks = course_notebooks(nbs)
    log(f'1/3 nbdev processing of {len(notebooks)} notebooks in {nbs} ...')
    proc = run_proc_nbs(nbs, force=a.clean)
    t1 = time.time()
    log(f'    done in {t1-t0:.1f}s -> {proc}')
    info = build_sources(nbs, proc)
    t2 = time.time()
    log(f'2/3 adapted {len(info["chapters"])} chapters (+home) and {len(info["api"])} API pages in {t2-t1:.1f}s -> {SRC}')
    # Sphinx notices new config values but not a changed hook in conf.py or a changed adapter: start afresh then
    import hashlib
    h = hashlib.sha256(b''.join(f.read_bytes() for f in sorted(DOCS.glob('*.py')) + sorted((DOCS/'_static').glob('*')))).hexdigest()
    hf = WORK/'.docs-code-hash'
    if not hf.exists() or hf.read_text() != h:
        shutil.rmtree(DOCTREES, ignore_errors=True); hf.write_text(h)
    rc, warns = run_sphinx(out, a.jobs, a.strict)
    if rc == 0: remove_orphans(out)
    if rc == 0 and uses_math(out):
        mj = find_mathjax()
        if mj is None:                          # never a CDN: the site must work offline; math then shows as TeX
            PROBLEMS.append('pages use math but no local MathJax was found, so it shows as TeX source: '
                            'pip install sphinx-mathjax-offline (or set IMGCLS_MATHJAX_DIR to a MathJax 3 folder)')
            (out/'_static'/'mathjax').mkdir(parents=True, exist_ok=True)
            (out/'_static'/'mathjax'/'tex-chtml.js').write_text('/* MathJax is not installed: math is shown as TeX */\n')
        else: shutil.copytree(mj, out/'_static'/'mathjax', dirs_exist_ok=True)
    (out/'.nojekyll').touch(exist_ok=True) if out.exists() else None
    t3 = time.time()
    log(f'3/3 Sphinx ({"ok" if rc == 0 else f"FAILED rc={rc}"}) in {t3-t2:.1f}s -> {out}')
    for w in warns: log(f'    sphinx warning: {w}')
    for p in PROBLEMS: log(f'    PROBLEM: {p}')
    log(f'total {t3-t0:.1f}s; {len(warns)} Sphinx warnings, {len(PROBLEMS)} notebook problems')
    if t3 - t0 > 180: log(f'WARNING: the build took {t3-t0:.0f}s, over its 3-minute budget')
    if rc == 0 and a.strict and (PROBLEMS or warns): rc = 1
    if rc == 0:      # lets tests/test_docs_site.py re-use a fresh site instead of building it again
        stamp = out/'.buildstamp.json'
        stamp.write_text(json.dumps({'nbs': str(nbs), 'seconds': round(t3 - t0, 1), 'started': t0,
                                                        'notebooks': info['notebooks'],
                                                        'problems': PROBLEMS, 'sphinx_warnings': warns}, indent=1))
        os.utime(stamp, (t0, t0))     # dated at the start: a notebook saved during the build makes the site stale
    return rc

if __name__ == '__main__':
    rc = main()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(rc)        # everything is written; skip ~15 s of interpreter teardown (IPython shells, torch threads)
