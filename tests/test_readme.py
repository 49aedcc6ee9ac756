"The README generator: figures shown from repository files become Markdown images; the committed README is current."
import importlib.util, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('readme_tool', ROOT/'tools'/'readme.py')
readme = importlib.util.module_from_spec(spec); spec.loader.exec_module(readme)


def test_image_from_repository_file_becomes_markdown_image(tmp_path):
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("#| echo: false\ndisplay(Image(filename='../bench/time_vs_accuracy.png'))")
    code.outputs = [nbformat.v4.new_output('display_data', data={'image/png': 'iVBORw0KGgo=', 'text/plain': '<Image>'})]
    plain = nbformat.v4.new_code_cell("print('hi')")
    plain.outputs = [nbformat.v4.new_output('stream', name='stdout', text='hi\n')]
    nb.cells = [nbformat.v4.new_markdown_cell('# Title\n\nSee [the chapter](01_pixels.ipynb).'), code, plain]
    p = tmp_path/'index.ipynb'; nbformat.write(nb, p)
    out = readme.render(p)
    assert '![time vs accuracy](bench/time_vs_accuracy.png)' in out
    assert 'Image(filename' not in out                      # echo: false hides the code
    assert '](nbs/01_pixels.ipynb)' in out and '```\nhi\n```' in out


def test_committed_readme_is_current():
    assert (ROOT/'README.md').read_text() == readme.render(), "README.md is stale: run `make readme`"
