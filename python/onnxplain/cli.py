"""Command line: ``onnxplain inspect|explain|fit|report|methods|demo``."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from . import model as _model
from .errors import ModelFormatError, UnsupportedModelError

# Which kinds each family of methods needs (DESIGN.md): gradients need every op differentiable;
# relevance methods redistribute through linear ops and route through the rest; product kinds
# (x*y of two activations) have no agreed LRP rule.
_FAMILIES = [
    ("gradient family", "gradient, input_t_gradient, integrated_gradients, smoothgrad", set()),
    ("DeConvNet / Guided BackProp", "deconvnet, guided_backprop", set()),
    ("LRP / Deep Taylor", "lrp.*, deep_taylor*", {"product"}),
    ("PatternNet / PatternAttribution", "pattern.net, pattern.attribution", set()),
    ("DeepLIFT", "deeplift.rescale, deeplift.reveal_cancel", {"product", "softmax"}),
]


def _raw_op_counts(path: str) -> Counter[str] | None:
    try:
        import onnx

        proto = onnx.load(path, load_external_data=False)
    except Exception:
        return None
    return Counter((f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in proto.graph.node)


def _opset_line(path: str) -> str | None:
    """``opsets: ai.onnx 13, ai.onnx.ml 3   ir_version: 8`` from the file, with what onnxplain knows."""
    try:
        import onnx

        proto = onnx.load(path, load_external_data=False)
    except Exception:
        return None
    imports = sorted(((o.domain or "ai.onnx"), int(o.version)) for o in proto.opset_import)
    listed = ", ".join(f"{d} {v}" for d, v in imports) or "none"
    return (f"opsets: {listed}   ir_version: {proto.ir_version}   (onnxplain knows ai.onnx opsets up to "
            f"{_model.NEWEST_OPSET}, ir_version up to {_model.NEWEST_IR_VERSION})")


def _ai_onnx_opset(path: str) -> int:
    try:
        import onnx

        proto = onnx.load(path, load_external_data=False)
    except Exception:
        return 0
    return max((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _op_status(op: str, opset: int, supported: set[str], versions: dict[str, tuple[list[int], list[int], str]],
               absent: str) -> str:
    """``supported (v13)``, ``UNSUPPORTED version 1: <advice>`` or ``absent`` for an op of the file."""
    if op not in supported:
        return absent
    impl, miss, advice = versions[op]
    v = max((u for u in (*impl, *miss) if u <= opset), default=0) if opset else 0
    if not v:
        return "supported"
    if v in impl:
        return f"supported (version {v})"
    return f"UNSUPPORTED version {v}: {advice}"


_AGNOSTIC = ("perturbation methods and metrics", "occlusion, prediction_difference, lime, ox.metrics, report")


def inspect(path: str, strip_softmax: bool) -> int:
    """Prints what onnxplain can do with a model. Exit status: 0 every method family applies (the
    engine runs the model), 1 only the forward-only methods (through onnxruntime), 2 none."""
    supported = set(_model.supported_ops())
    versions = _model.op_versions()
    raw = _raw_op_counts(path)
    opsets = _opset_line(path)
    opset = _ai_onnx_opset(path)
    try:
        m = _model.load(path, strip_softmax=strip_softmax, backend="onnxplain")
    except UnsupportedModelError as e:
        print(f"{path}: NOT SUPPORTED by onnxplain's engine")
        if opsets:
            print(opsets)
        print(str(e))
        if raw:
            print("\nops in the file:")
            for op, n in sorted(raw.items()):
                print(f"  {op:<28} {n:>4}   {_op_status(op, opset, supported, versions, 'UNSUPPORTED')}")
        try:
            ort_model = _model.load(path, backend="onnxruntime")
        except Exception as ort_error:  # noqa: BLE001 - any reason onnxruntime gives
            print(f"\nonnxruntime cannot run it either ({str(ort_error).strip().splitlines()[0]}): no method applies")
            return 2
        print("\nmethod families:")
        print(f"  {_AGNOSTIC[0]:<34} apply through onnxruntime   ({_AGNOSTIC[1]}); explained output "
              f"'{ort_model.output}'")
        for family, names, _ in _FAMILIES:
            print(f"  {family:<34} do not apply: they walk the graph backwards in the engine   ({names})")
        return 1
    except OSError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 2
    except ModelFormatError as e:
        print(f"{path}: cannot load the model: {e}", file=sys.stderr)
        if opsets:
            print(opsets, file=sys.stderr)
        return 2
    print(f"{path}: supported")
    if opsets:
        print(opsets)
    print(m.summary())
    if raw:
        print("ops in the file (before rewrites), with the ONNX version each runs under:")
        for op, n in sorted(raw.items()):
            print(f"  {op:<28} {n:>4}   {_op_status(op, opset, supported, versions, 'removed by rewrites')}")
    kinds = {k for _, _, k in m.nodes}
    from .explain import methods

    known = methods()
    print("method families:")
    for family, names, blockers in _FAMILIES:
        prefixes = [n.strip().rstrip("*") for n in names.split(",")]
        if not any(k.startswith(p) for k in known for p in prefixes):
            continue  # not in this version of onnxplain
        bad = kinds & blockers
        verdict = "applies" if not bad else f"limited: the model has {', '.join(sorted(bad))} ops"
        if family.startswith(("LRP", "PatternNet")) and "linear" not in kinds:
            verdict = "does not apply: no linear ops"
        print(f"  {family:<34} {verdict}   ({names})")
    print(f"  {_AGNOSTIC[0]:<34} applies   ({_AGNOSTIC[1]})")
    return 0


def _param_value(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def explain_cmd(args: argparse.Namespace) -> int:
    import numpy as np

    from .explain import explainer

    params: dict[str, object] = {}
    for kv in args.param:
        if "=" not in kv:
            print(f"--param expects K=V, got {kv!r}", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        params[k.strip()] = _param_value(v.strip())
    try:
        x = np.load(args.input)
        if str(args.model).endswith(".oxp"):
            from .explain import load_explainer

            ex = load_explainer(args.model)
            if args.method not in (None, ex.method) or params:
                print(f"{args.model} holds a fitted {ex.method} explainer; --method/--param do not apply",
                      file=sys.stderr)
                return 2
        else:
            if args.method is None:
                print("--method is required with a .onnx model", file=sys.stderr)
                return 2
            m = _model.load(args.model, strip_softmax=not args.keep_softmax)
            ex = explainer(m, args.method, **params)
        target = None if args.target is None else int(args.target)
        rel = ex.explain(x, target=target)
    except (ValueError, OSError, ModelFormatError, UnsupportedModelError) as e:
        print(f"onnxplain explain: {e}", file=sys.stderr)
        return 2
    np.save(args.out, rel)
    print(f"{ex.method}: relevance {rel.shape} written to {args.out}")
    if args.png:
        from . import viz

        if np.asarray(rel).ndim not in (3, 4):
            print("--png: only image-shaped inputs (N, C, H, W) or (N, H, W) can be drawn", file=sys.stderr)
            return 2
        tiles = [[viz.heatmap(r) for r in np.asarray(rel)[:16]]]
        viz.save_png(args.png, viz.grid(tiles))
        print(f"heatmaps written to {args.png}")
    return 0


def fit_cmd(args: argparse.Namespace) -> int:
    """Fits a pattern explainer, reports ρ per layer on held-out samples and the fit report, saves it."""
    import numpy as np

    from .explain import explainer
    from .quality import signal_quality

    try:
        x = np.load(args.data, mmap_mode="r")
        m = _model.load(args.model, strip_softmax=not args.keep_softmax)
        ex = explainer(m, args.method, estimator=args.estimator)
        n = int(x.shape[0])
        cut = n - int(round(n * args.holdout)) if args.holdout > 0 else n
        if args.holdout > 0 and not 0 < cut < n:
            print(f"--holdout {args.holdout} leaves no samples to fit or to measure on ({n} samples)", file=sys.stderr)
            return 2
        ex.fit(x[:cut], batch_size=args.batch_size)
        rho = signal_quality(m, x[cut:], explainer=ex, batch_size=args.batch_size) if cut < n else {}
        if cut < n:
            ex.fit(x[cut:], batch_size=args.batch_size)  # the saved patterns use every sample
        report = ex.fit_report
    except (ValueError, OSError, ModelFormatError, UnsupportedModelError) as e:
        print(f"onnxplain fit: {e}", file=sys.stderr)
        return 2
    ex.save(args.out)
    print(f"{ex.method} (estimator={args.estimator}) fitted on {n} samples, written to {args.out}")
    if rho:
        print(f"rho (Kindermans et al. 2018, eq. 7; 1 is best) measured on the last {n - cut} samples, "
              f"patterns from the first {cut}:")
    print(f"  {'layer':<32} {'neurons':>8} {'rows':>10} {'never fired':>12} {'zero denom.':>12} {'rho':>8}")
    for node, r in report.items():
        q = rho.get(node, float("nan"))
        print(f"  {node:<32} {int(r['neurons']):>8} {int(r['rows']):>10} {int(r['never_fired']):>12} "
              f"{int(r['zero_denominator']):>12} {q:>8.4f}")
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    """Writes the HTML report of ``ox.report`` for a model and a batch stored as .npy."""
    import numpy as np

    from .report import report

    names = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods is not None else []
    if args.methods is not None and not names:
        print("--methods needs at least one method name", file=sys.stderr)
        return 2
    params: dict[str, dict[str, object]] = {}
    for item in args.param:
        method, sep, kv = item.partition(":")
        if not sep or "=" not in kv:
            print(f"--param expects METHOD:K=V, e.g. lrp.epsilon:epsilon=0.01; got {item!r}", file=sys.stderr)
            return 2
        if method.strip() not in names:
            listed = f"--methods ({', '.join(names)})" if names else "--methods (give the methods by name)"
            print(f"--param {item!r}: {method.strip()!r} is not in {listed}", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        params.setdefault(method.strip(), {})[k.strip()] = _param_value(v.strip())
    metrics = [] if args.metrics.strip().lower() in ("", "none") else [m.strip() for m in args.metrics.split(",")]
    if args.feature_names is not None and args.feature_names_file is not None:
        print("give --feature-names or --feature-names-file, not both", file=sys.stderr)
        return 2
    feature_names: list[str] | None = None
    try:
        if args.feature_names is not None:
            feature_names = [n.strip() for n in args.feature_names.split(",")]
        elif args.feature_names_file is not None:
            feature_names = _read_names(args.feature_names_file)
    except OSError as e:
        print(f"onnxplain report: cannot read --feature-names-file: {e}", file=sys.stderr)
        return 2
    try:
        x = np.load(args.input)
        fit_data = np.load(args.fit_data, mmap_mode="r") if args.fit_data else None
        m = _model.load(args.model, strip_softmax=not args.keep_softmax)
        target = None if args.target is None else int(args.target)
        chosen = [(n, params.get(n, {})) for n in names] if names else None
        out = report(m, x, methods=chosen, path=args.out, target=target, metrics=metrics, fit_data=fit_data,
                     show=args.show, title=args.title or Path(args.model).name, feature_names=feature_names)
    except ImportError as e:
        print(f"onnxplain report: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError, ModelFormatError, UnsupportedModelError) as e:
        print(f"onnxplain report: {e}", file=sys.stderr)
        return 2
    shown = ", ".join(names) if names else "the default methods"
    print(f"report on {len(x)} samples with {shown} written to {out}")
    return 0


def _read_names(path: str) -> list[str]:
    """Feature names from a text file: one per line, or one line of comma-separated names (a CSV
    header); blank lines and lines starting with # are skipped."""
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) == 1 and "," in lines[0]:
        return [n.strip() for n in lines[0].split(",")]
    return lines


def config_cmd(args: argparse.Namespace) -> int:
    """Prints what a C/C++ build needs to use the installed library (as correctionlib's `config`)."""
    from pathlib import Path

    pkg = Path(__file__).resolve().parent
    cmake_dir = pkg / "lib" / "cmake" / "onnxplain"
    if not (cmake_dir / "onnxplainConfig.cmake").exists():
        print(f"onnxplain config: no C/C++ files under {pkg}: they are installed with the package "
              "(`pip install onnxplain` or `pip install .`); this onnxplain runs from a source tree", file=sys.stderr)
        return 2
    include, lib = pkg / "include", pkg
    out = {
        "cmake": f"-Donnxplain_DIR={cmake_dir}",
        "cmake_dir": str(cmake_dir),
        "cflags": f"-I{include}",
        "libs": f"-L{lib} -lonnxplain_core -Wl,-rpath,{lib}",
        "includedir": str(include),
        "libdir": str(lib),
        "pkgconfig_path": str(pkg / "lib" / "pkgconfig"),
        "version": _version(),
    }
    chosen = [k for k in out if getattr(args, k)]
    if not chosen:
        for k, v in out.items():
            print(f"{k.replace('_', '-')}: {v}")
        return 0
    print(" ".join(out[k] for k in chosen))
    return 0


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onnxplain", description="Explain ONNX models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_inspect = sub.add_parser("inspect", help="inputs, outputs, ops, support and applicable methods")
    p_inspect.add_argument("model", help="path to a .onnx file")
    p_inspect.add_argument("--keep-softmax", action="store_true", help="do not strip a final softmax")
    p_demo = sub.add_parser("demo", help="run and explain the bundled digits CNN, compare it with onnxruntime")
    p_demo.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p_demo.add_argument("--out", default="onnxplain_demo.png", help="where to write the picture")
    sub.add_parser("methods", help="list the explanation methods with their parameters and papers")
    p_ex = sub.add_parser("explain", help="explain a batch stored as .npy; writes the relevance as .npy")
    p_ex.add_argument("model", help="path to a .onnx file, or a fitted explainer (.oxp, from `onnxplain fit`)")
    p_ex.add_argument("input", help=".npy file with a batch for the model's (single) input")
    p_ex.add_argument("--method", default=None, help="a method name (see `onnxplain methods`); not with a .oxp")
    p_ex.add_argument("--param", action="append", default=[], metavar="K=V",
                      help="a method parameter, e.g. --param epsilon=0.01 (repeatable)")
    p_ex.add_argument("--target", default=None, help="output index to explain (default: argmax per sample)")
    p_ex.add_argument("--out", required=True, help="output .npy for the relevance (same shape as the input)")
    p_ex.add_argument("--png", default=None, help="also write heatmaps of the first 16 samples as a PNG")
    p_ex.add_argument("--keep-softmax", action="store_true", help="do not strip a final softmax")
    p_fit = sub.add_parser("fit", help="fit PatternNet/PatternAttribution on data (.npy), report rho, save a .oxp")
    p_fit.add_argument("model", help="path to a .onnx file")
    p_fit.add_argument("data", help=".npy file with samples for the model's (single) input")
    p_fit.add_argument("--out", required=True, help="where to write the fitted explainer (.oxp)")
    p_fit.add_argument("--method", default="pattern.attribution", choices=["pattern.attribution", "pattern.net"])
    p_fit.add_argument("--estimator", default="relu", choices=["relu", "linear", "filter"])
    p_fit.add_argument("--batch-size", type=int, default=64)
    p_fit.add_argument("--holdout", type=float, default=0.2,
                       help="share of the samples rho is measured on (0: no rho); they are fitted afterwards")
    p_fit.add_argument("--keep-softmax", action="store_true", help="do not strip a final softmax")
    p_rep = sub.add_parser("report", help="write one self-contained HTML report comparing methods on a batch "
                                          "of images or tabular rows (needs matplotlib: pip install "
                                          "onnxplain[report])")
    p_rep.add_argument("model", help="path to a .onnx file")
    p_rep.add_argument("input", help=".npy file with a batch of images (N, C, H, W), C = 1 or 3, or of tabular "
                                     "rows (N, F)")
    p_rep.add_argument("--methods", default=None,
                       help="comma-separated method names (see `onnxplain methods`); default gradient, "
                            "integrated_gradients, lrp.epsilon_plus_flat, or for a model only onnxruntime runs "
                            "occlusion, prediction_difference (tabular), lime")
    p_rep.add_argument("--feature-names", default=None, metavar="A,B,C",
                       help="tabular data: comma-separated feature names, one per column")
    p_rep.add_argument("--feature-names-file", default=None, metavar="FILE",
                       help="tabular data: a text file of feature names, one per line (or one comma-separated "
                            "line)")
    p_rep.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")
    p_rep.add_argument("--target", default=None, help="output index to explain (default: argmax per sample)")
    p_rep.add_argument("--param", action="append", default=[], metavar="METHOD:K=V",
                       help="a method parameter, e.g. --param lrp.epsilon:epsilon=0.01 (repeatable)")
    p_rep.add_argument("--metrics", default="aopc,faithfulness,randomisation",
                       help="comma-separated metrics, or none (default: aopc,faithfulness,randomisation)")
    p_rep.add_argument("--fit-data", default=None,
                       help=".npy with training samples for methods that learn (pattern.*, prediction_difference); "
                            "default: the input itself")
    p_rep.add_argument("--show", type=int, default=8, help="how many samples to draw (default 8)")
    p_rep.add_argument("--title", default=None, help="the report's title (default: the model file's name)")
    p_rep.add_argument("--keep-softmax", action="store_true", help="do not strip a final softmax")
    p_cfg = sub.add_parser("config", help="what a C/C++ build needs: CMake dir, compiler and linker flags")
    for flag, what in [("cmake", "-Donnxplain_DIR=... for find_package(onnxplain CONFIG)"),
                       ("cmake-dir", "the folder of onnxplainConfig.cmake"), ("cflags", "compiler flags (-I...)"),
                       ("libs", "linker flags (-L... -lonnxplain_core -Wl,-rpath,...)"),
                       ("includedir", "the header folder"), ("libdir", "the library folder"),
                       ("pkgconfig-path", "a folder for PKG_CONFIG_PATH (onnxplain.pc)"), ("version", "the version")]:
        p_cfg.add_argument(f"--{flag}", action="store_true", help=what)
    args = parser.parse_args(argv)
    if args.command == "config":
        return config_cmd(args)
    if args.command == "inspect":
        return inspect(args.model, strip_softmax=not args.keep_softmax)
    if args.command == "demo":
        from . import demo

        return demo.run(threads=args.threads, out_png=args.out)
    if args.command == "methods":
        from .explain import methods

        for info in methods().values():
            print(info)
        return 0
    if args.command == "explain":
        return explain_cmd(args)
    if args.command == "fit":
        return fit_cmd(args)
    if args.command == "report":
        return report_cmd(args)
    return 1


if __name__ == "__main__":
    sys.exit(main())
