// Compile Python sources to bytecode with the vendored Pyodide's own Python, in Node.
//
//   node tools/pyodide_compile.mjs <pyodide dir> <source dir>
//
// Every *.py under <source dir> gets a *.pyc beside it, compiled inside Pyodide (so the
// magic number and the bytecode are those of the Python that the browser runs, whatever
// python3 the build machine has), with an unchecked-hash header (no timestamp: the same
// sources give the same bytes). The docstrings of modules and functions are left out (the
// browser never shows them) and those of classes cut to their first line (a dataclass
// without one computes its signature for __doc__ at import). Asserts stay, and the line tables
// (tracebacks keep their line numbers). tools/browser_wheel.py runs this and packs the
// .pyc files, without the sources, into the browser's wheel. Prints one line of JSON:
// {"python": "3.14.2", "tag": "cp314", "files": N}.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [pyodideDir, sourceDir] = process.argv.slice(2);
if (!pyodideDir || !sourceDir) {
  console.error("usage: node tools/pyodide_compile.mjs <pyodide dir> <source dir>");
  process.exit(2);
}
const indexURL = path.resolve(pyodideDir) + path.sep;
const { loadPyodide } = await import(pathToFileURL(path.join(indexURL, "pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL, stdout: () => {}, stderr: (line) => console.error(line) });
pyodide.mountNodeFS("/src", path.resolve(sourceDir));
const result = pyodide.runPython(`
import ast, importlib.util, json, pathlib, sys
from importlib._bootstrap_external import _code_to_hash_pyc

def without_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \\
                    and isinstance(first.value.value, str):
                if isinstance(node, ast.ClassDef):
                    first.value.value = first.value.value.strip().split("\\n", 1)[0]
                else:
                    node.body = node.body[1:] or [ast.copy_location(ast.Pass(), first)]
    return tree

files = 0
for source in sorted(pathlib.Path("/src").rglob("*.py")):
    relative = str(source.relative_to("/src"))
    data = source.read_bytes()
    code = compile(without_docstrings(ast.parse(data, relative)), relative, "exec", dont_inherit=True)
    source.with_suffix(".pyc").write_bytes(
        _code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False))
    files += 1
json.dumps({"python": sys.version.split()[0], "tag": "cp%d%d" % sys.version_info[:2], "files": files})
`);
console.log(result);
