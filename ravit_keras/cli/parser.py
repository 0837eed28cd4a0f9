"""The ``ravit`` argument parser: each sub-command's own flags, and the shared ones by parent."""

from __future__ import annotations

import argparse

from ravit_keras import runs
from ravit_keras.cli.backend import BACKENDS
from ravit_keras.cli.options import (
    CONVERSION_MODES,
    MODES,
    HelpFormatter,
    arch_parent,
    calibration_parent,
    conversion_modes,
    data_parent,
    distribution_parent,
    init_source,
    model_name,
    model_parent,
    model_path,
    non_negative_int,
    out_parent,
    output_parent,
    positive_int,
    progress_parent,
    recipe_parent,
    threads_parent,
    thresholds_parent,
)

# What --model takes, by command (appended to the command's description).
KERAS_MODEL = "--model: a .keras file, a training run folder or preset:NAME."
CONVERTED = "--model: a folder written by ravit convert."
SHIPPED = ("A preset (preset:NAME, a preset folder, hf://OWNER/REPO) ships its int8 submodels: "
           "--mode int8 runs them, no dataset needed.")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command; ``args.command`` names the one given."""
    output = output_parent()
    parser = argparse.ArgumentParser(prog="ravit", description="RAViT: train, evaluate, convert to TFLite "
                                     "submodels, and run them with the early-exit scheduler.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="also show TensorFlow's and LiteRT's own logs")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_text, parents=(), model=None):
        description = f"{help_text}\n\n{model}" if model else help_text
        return sub.add_parser(name, help=help_text, description=description, parents=[output, *parents],
                              formatter_class=HelpFormatter)

    p = add("flops", "cost model: MACs per branch and per exit (Eq. 3/4 of the paper)", [arch_parent()])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--exit-counts", type=lambda s: [int(x) for x in s.split(",")],
                   help="images leaving at each exit, e.g. 600,400: adds the expected MACs (Eq. 4)")

    p = add("train", "train a RAViT with model.fit (resumes if --out holds an unfinished run)",
            [arch_parent(), data_parent(), recipe_parent(), progress_parent(("auto", "bar", "epoch", "none")),
             distribution_parent(),
             out_parent("the run folder: " + ", ".join(runs.RUN_FILES), required=True)])
    p.add_argument("--epochs", type=positive_int, default=10, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=128, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of AdamW (cosine schedule)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, shuffling and augmentation")
    p.add_argument("--steps-per-epoch", type=positive_int, help="steps per epoch (default: one pass over the data)")
    p.add_argument("--limit-train", type=positive_int, help="use only the first N training images")
    p.add_argument("--limit-test", type=positive_int, help="use only the first N test images")
    p.add_argument("--validate", action="store_true", help="evaluate on the test split after each epoch")
    p.add_argument("--normalization", default="auto", choices=("auto", "preset", "data"),
                   help="per-channel mean/std the model normalises with. preset: the architecture's "
                        "(--arch); data: the training data's (measured on 2,000 images); auto: the "
                        "architecture's on its own dataset, else the data's. With --init, auto and preset "
                        "keep the --init model's (its first layer was trained on pixels normalised so)")

    p.add_argument("--name", type=model_name,
                   help="the model's name in plots, manifest and TFLite metadata (default: the architecture's "
                        "on its own dataset, else the data's: its folder's or file's name, or its tfds name)")
    p.add_argument("--dtype-policy", default="float32", choices=("float32", "mixed_bfloat16"),
                   help="compute precision of training (weights stay float32; the saved model is float32)")
    p.add_argument("--xla", default="auto", choices=("auto", "on", "off"),
                   help="XLA-compile the training step; auto: on for float32, off for mixed_bfloat16 "
                        "(faster so on the CPUs measured, see BENCHMARKS.md); on JAX always on (jit)")
    p.add_argument("--calibration-holdout", type=float,
                   help="share of each class's training images kept out of training, on which eval and "
                        "convert calibrate the early-exit thresholds (0: none; default: 5 %% of the "
                        "training images, at least 500 images, at most 20 %%)")
    # Checked by cli.backend (one line naming it), not argparse's usage block.
    p.add_argument("--backend", metavar="{" + ",".join(BACKENDS) + "}",
                   help="Keras backend to train on (default: Keras's own setting, KERAS_BACKEND or keras.json); "
                        "jax trains without TensorFlow (NumPy input, augmentation inside the jitted step)")
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--init", type=init_source, metavar="MODEL",
                   help="start from a trained model: preset:NAME, a training run folder or a .keras file. Its "
                        "architecture and normalisation are taken (architecture flags may only repeat them; "
                        "--image-size resamples the position embeddings), its weights copied, and the exit "
                        "heads re-made unless the data's classes are its own")
    g.add_argument("--freeze-epochs", type=non_negative_int, default=0, metavar="K",
                   help="with --init: train only the exit heads (encoders frozen) for the first K epochs, then "
                        "everything")

    p = add("eval", "per-exit accuracy, early-exit routing, threshold sweep, calibration, per-class results",
            [model_parent(), data_parent(), thresholds_parent(), calibration_parent(),
             out_parent("report.json, sweep.csv/json and plots into this folder")], KERAS_MODEL)
    p.add_argument("--split", default="test", help="split evaluated")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per forward pass")
    p.add_argument("--mac-budget", type=float,
                   help="calibrate thresholds to this average MACs per image (a value <= 1 is a "
                        "fraction of the full model's MACs)")
    p.add_argument("--max-accuracy-drop", type=float,
                   help="calibrate the cheapest thresholds losing at most this accuracy (fraction, e.g. 0.005)")
    p.add_argument("--baseline", action="append",
                   help="NAME=MODEL: a classic ViT to show as a point on the plot (repeatable)")

    p = add("convert", "trained model -> TFLite submodels + manifest (mode auto by default; int8 for phones)",
            [model_parent(), data_parent(), calibration_parent(),
             out_parent("the submodels and manifest into this folder (written atomically)", required=True)],
            KERAS_MODEL)
    p.add_argument("--mode", default="auto", choices=MODES,
                   help="int8: integer matrix products, one XNNPACK partition per submodel (for phones); "
                        "int8-full: every op integer (NPU/DSP delegates); dynamic: int8 weights, float "
                        "activations; int16x8; float32; auto: convert all and keep the fastest ON THIS "
                        "MACHINE of those as accurate as float32 (top-1 agreement >= 98 %% and a 95 %% "
                        "bound on the accuracy loss <= 1 point)")
    p.add_argument("--candidates", type=conversion_modes, default=CONVERSION_MODES,
                   help="comma-separated modes --mode auto converts and times (default: all of "
                        + ", ".join(CONVERSION_MODES) + ")")
    p.add_argument("--quantization-images", type=positive_int, default=500,
                   help="how many of the calibration images calibrate the int8 activation ranges")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")

    p = add("run", "the device-emulating scheduler over a labelled dataset, one image at a time",
            [model_parent(), data_parent(), threads_parent(), thresholds_parent(), progress_parent(),
             out_parent("the report (with per-class figures) as JSON")], CONVERTED + " " + SHIPPED)
    p.add_argument("--mode", choices=CONVERSION_MODES,
                   help="the submodels of this mode that ship with --model (a preset: int8); default: "
                        "--model itself when it is converted, else the int8 submodels it ships")
    p.add_argument("--split", default="test", help="split streamed")
    p.add_argument("--limit", type=positive_int, help="stream only the first N images")
    g = p.add_argument_group("other operating points (at most one, and not with --thresholds; "
                             "default: the manifest's thresholds)")
    g.add_argument("--mac-budget", type=float, help="average MACs per image (<= 1: fraction of the full model)")
    g.add_argument("--latency-budget-ms", type=float, help="expected latency per image, measured here")
    g.add_argument("--battery", type=float, help="battery level 0..1 for the battery-aware policy")
    g = p.add_argument_group("outputs")
    g.add_argument("--per-image", help="write every image's answer (.csv or .json)")
    g.add_argument("--top-k", type=positive_int, default=3, help="labels per image in --per-image")
    g.add_argument("--plot", help="draw the exit histogram as PNG")
    g.add_argument("--per-class-plot", help="draw per-class top-1 and exit shares as PNG")
    g.add_argument("--confusion-plot", help="draw the confusion matrix as PNG")

    p = add("predict", "classify image files or folders (no labels needed) with a converted or a Keras model",
            [model_parent(), threads_parent(), thresholds_parent(), progress_parent(),
             out_parent("the answers as .csv or .json (default: print them)")],
            "--model: a folder written by ravit convert (runs the scheduler), or a .keras file, training run "
            "folder or preset:NAME. " + SHIPPED)
    p.add_argument("--mode", choices=("keras",) + CONVERSION_MODES,
                   help="keras: the Keras model; a conversion mode: the submodels of that mode that ship "
                        "with --model (a preset: int8); default: --model as it is")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--top-k", type=positive_int, default=3, help="labels and probabilities per image")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="warn about an unreadable image and go on (default: stop, naming the file)")
    p.add_argument("--limit", type=positive_int, help="classify only the first N images")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (Keras model)")

    p = add("bench", "latency of RAViT (and optionally a classic ViT or smaller static models), int8 and "
            "float, side by side; prints one summary table (--verbose: every table)",
            [model_parent(), data_parent(), calibration_parent(), thresholds_parent(), threads_parent(),
             progress_parent(), out_parent("the submodels, benchmark.json and benchmark.md into this folder",
                                           required=True)],
            "--model: a trained RAViT (.keras file, training run folder or preset:NAME), converted here to "
            "each of --modes, or a folder written by ravit convert, timed as it is. Besides the τ grid, "
            "each converted model runs at its own calibrated operating points (its manifest's).")
    p.add_argument("--baseline", type=model_path,
                   help="trained classic ViT of the compared depth (optional; path or preset:NAME)")
    p.add_argument("--static-baseline", action="append", metavar="NAME=MODEL",
                   help="a smaller model without early exit (Keras model or converted folder), shown beside "
                        "RAViT's cheapest operating point at least as accurate (repeatable)")
    p.add_argument("--split", default="test", help="split streamed through the scheduler")
    p.add_argument("--limit", type=positive_int, default=2000, help="images streamed")
    p.add_argument("--no-naive", action="store_true", help="skip the naive Keras-graph ViT baseline")
    p.add_argument("--modes", type=conversion_modes,
                   help="comma-separated conversion modes of a Keras --model, benchmarked side by side "
                        "(default: all of " + ", ".join(CONVERSION_MODES) + "; a converted folder: its own)")

    p = add("profile", "where a submodel's time goes: per-operator times, XNNPACK's own operators included",
            [model_parent(), threads_parent()], "--model: a folder written by ravit convert, or one .tflite file.")
    p.add_argument("--runs", type=positive_int, default=200, help="invokes profiled per submodel")
    p.add_argument("--top", type=positive_int, default=12, help="operator kinds listed per submodel")
    p.add_argument("--every-op", action="store_true", help="also list every operator in run order")
    p.add_argument("--json", help="also write the profiles (every operator) as JSON")

    p = add("demo", "end to end on generated data (no network): train, eval, convert, run",
            [out_parent("everything (train/, eval/, tflite/, run.json, predictions.csv) into this folder",
                        default="runs/demo")])
    p.add_argument("--layers", default="1-2", help="layers per branch")
    p.add_argument("--epochs", type=positive_int, default=6, help="training epochs")
    p.add_argument("--train-images", type=positive_int, default=3000, help="generated training images")
    p.add_argument("--test-images", type=positive_int, default=1000, help="generated test images")
    p.add_argument("--mac-budget-fraction", type=float, default=0.6, help="MAC budget eval calibrates to")
    p.add_argument("--mode", default="auto", choices=MODES, help="conversion mode (int8 for the Android app)")
    return parser
