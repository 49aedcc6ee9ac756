"""Generate README.md from nbs/index.ipynb without Quarto (nbdev_readme needs Quarto).

    python tools/readme.py          # write README.md
    python tools/readme.py --check  # exit 1 if README.md is stale

Markdown cells are copied; code cells become ```python blocks (directive lines removed) followed by their text
outputs; cells marked `#| hide` are dropped; `#| echo: false` keeps only the output. Links to sibling notebooks
(`01_pixels.ipynb`) are pointed at `nbs/` so they work on the repository page. A figure shown from a repository file with
`Image(filename='../some/file.png')` becomes a Markdown image of that file (`![file](some/file.png)`), so the README
shows the committed figure instead of dropping it.
"""
import re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
IMAGE_FILE = re.compile(r"""Image\(filename=['"]\.\./([\w./-]+)['"]""")
HEADER = '<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, then run `make readme`. -->\n\n'


def directives(src):
    "The `#| key: value` directives at the top of a code cell, as a dict."
    out = {}
    for line in src.splitlines():
        m = re.match(r'\s*#\|\s*([\w-]+)\s*:?\s*(.*)', line)
        if not m: break
        out[m.group(1)] = m.group(2).strip()
    return out


def frontmatter(src):
    "Title and description from a raw `---` frontmatter cell."
    meta = dict(re.findall(r'^(\w+):\s*"?(.*?)"?\s*$', src, flags=re.M))
    parts = [f"# {meta['title']}"] if 'title' in meta else []
    if meta.get('description'): parts.append(f"> {meta['description']}")
    return '\n\n'.join(parts)


def output_text(out):
    if out.output_type == 'stream': return out.text
    data = out.get('data', {})
    if 'text/markdown' in data: return ('md', data['text/markdown'])
    if 'text/plain' in data and not any(k.startswith('image/') for k in data) and 'text/html' not in data: return data['text/plain']
    return None


def render(nb_path=ROOT/'nbs'/'index.ipynb'):
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for cell in nb.cells:
        src = cell.source
        if cell.cell_type == 'raw':
            if src.strip().startswith('---'): parts.append(frontmatter(src))
            continue
        if cell.cell_type == 'markdown': parts.append(src.strip()); continue
        d = directives(src)
        if 'hide' in d or d.get('include') == 'false': continue
        code = '\n'.join(l for l in src.splitlines() if not re.match(r'\s*#\|', l)).strip()
        if code and d.get('echo') != 'false': parts.append(f"```python\n{code}\n```")
        if d.get('output') == 'false': continue
        outs = cell.get('outputs', [])
        for out in outs:
            t = output_text(out)
            if isinstance(t, tuple): parts.append(t[1].strip())
            elif t and t.strip(): parts.append(f"```\n{t.rstrip()}\n```")
        if any(k.startswith('image/') for o in outs for k in o.get('data', {})):
            parts.extend(f"![{Path(f).stem.replace('_', ' ')}]({f})" for f in IMAGE_FILE.findall(src))
    text = '\n\n'.join(p for p in parts if p) + '\n'
    text = re.sub(r'\]\((?!https?:|#|nbs/)([\w./-]+\.ipynb)', r'](nbs/\1', text)
    text = re.sub(r'\]\((?!https?:|#|nbs/|\.\./)(images/[\w./-]+)', r'](nbs/\1', text)
    return HEADER + text


def main(argv):
    want, readme = render(), ROOT/'README.md'
    if '--check' in argv:
        if not readme.exists() or readme.read_text() != want:
            print('README.md is stale: it must be generated from nbs/index.ipynb. Run `make readme` and commit it.')
            return 1
        print('README.md is up to date with nbs/index.ipynb.')
        return 0
    readme.write_text(want)
    print(f'Wrote {readme.relative_to(ROOT)} from nbs/index.ipynb')
    return 0


if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
