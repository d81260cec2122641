// Compile Python sources to bytecode with the vendored Pyodide's own Python, in Node.
//
//   node tools/pyodide_compile.mjs <pyodide dir> <source dir>
//
// Every *.py under <source dir> gets a *.pyc beside it, compiled inside Pyodide (so the
// magic number and the bytecode are those of the Python that the browser runs, whatever
// python3 the build machine has), with an unchecked-hash header (no timestamp: the same
// sources give the same bytes). Docstrings are left out (the browser never shows them), and
// so are the annotations of functions and of names outside class bodies (nothing in the
// package reads them at run time, and each `def` would build them: a fifth of the bytecode,
// a tenth of the download); a class body keeps its own, which core/structs.py reads for the
// fields. So are the column tables (PEP 657's carets under the failing expression, as with
// `python -X no_debug_ranges`: about a quarter of the bytecode); asserts and line numbers stay,
// so tracebacks still name every line. tools/browser_wheel.py runs this and packs the
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
import ast, importlib.util, json, pathlib, sys, types
from importlib._bootstrap_external import _code_to_hash_pyc

def without_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \\
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.copy_location(ast.Pass(), first)]
    return tree

class WithoutAnnotations(ast.NodeTransformer):
    # A function's annotations go; a class body's \`name: type\` stays (the fields of a
    # struct). \`x: T = v\` elsewhere becomes \`x = v\`, and \`x: T\` alone (no effect but an
    # entry in __annotations__) goes.
    def visit_FunctionDef(self, node):
        for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                    node.args.vararg, node.args.kwarg):
            if arg is not None:
                arg.annotation = None
        node.returns = None
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.bases = [self.visit(b) for b in node.bases]
        node.body = [s if isinstance(s, ast.AnnAssign) else self.visit(s) for s in node.body]
        return node

    def visit_AnnAssign(self, node):
        if node.value is None:
            return None
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)

def without_annotations(tree):
    tree = WithoutAnnotations().visit(tree)
    for node in ast.walk(tree):  # a body of nothing but \`x: T\` lines gets a \`pass\`
        if not isinstance(node, ast.Module) and getattr(node, "body", None) == []:
            node.body = [ast.Pass()]
    return ast.fix_missing_locations(tree)

def varint(value):
    out = bytearray()
    while value >= 64:
        out.append(0x40 | (value & 63))
        value >>= 6
    out.append(value)
    return out

def without_columns(code):
    # The location table in its "line only" form (Objects/locations.md: code 13, a signed
    # line delta; code 15: no location), entries of at most 8 code units, as -X
    # no_debug_ranges writes it. co_lines() must come out the same.
    consts = tuple(without_columns(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    table, line = bytearray(), code.co_firstlineno
    for start, end, lineno in code.co_lines():
        units = (end - start) // 2
        while units > 0:
            length = min(units, 8)
            if lineno is None:
                table.append(0x80 | 15 << 3 | length - 1)
            else:
                delta = lineno - line
                table.append(0x80 | 13 << 3 | length - 1)
                table += varint((-delta) << 1 | 1 if delta < 0 else delta << 1)
                line = lineno
            units -= length
    new = code.replace(co_consts=consts, co_linetable=bytes(table))
    assert list(new.co_lines()) == list(code.co_lines()), code
    return new

files = 0
for source in sorted(pathlib.Path("/src").rglob("*.py")):
    relative = str(source.relative_to("/src"))
    data = source.read_bytes()
    code = without_columns(compile(without_annotations(without_docstrings(ast.parse(data, relative))), relative, "exec", dont_inherit=True))
    source.with_suffix(".pyc").write_bytes(
        _code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False))
    files += 1
json.dumps({"python": sys.version.split()[0], "tag": "cp%d%d" % sys.version_info[:2], "files": files})
`);
console.log(result);
