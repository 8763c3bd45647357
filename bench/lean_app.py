"""The lean reference server of issue 14: what /predict costs with nothing but the model around it.

Flask under the same gunicorn settings as cnn-lens (bench/gunicorn_bench.conf.py), one route: the
raw PNG body (or the multipart part `file`, parsed by werkzeug as Flask does) → Pillow (greyscale,
plain resize to 28x28) → /255 → model.onnx's `session.run` on one onnxruntime thread per worker →
the top 3 classes as JSON. No metrics, no logs, no request ids, no limits, no digit
preprocessing: cnn-lens's /predict is measured against it with all of those on."""
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from PIL import Image

from lens.bundle import session_options

MODEL = Path(__file__).resolve().parents[1] / "models" / "mnist-cnn" / "model.onnx"

# onnxruntime set up as cnn-lens sets it up, so that only the work around the model differs
session = ort.InferenceSession(str(MODEL), session_options(threads=1),
                               providers=["CPUExecutionProvider"])
app = Flask(__name__)


@app.post("/predict")
def predict():
    multipart = request.mimetype == "multipart/form-data"
    body = request.files["file"].read() if multipart else request.get_data()
    image = Image.open(io.BytesIO(body)).convert("L").resize((28, 28))
    x = np.asarray(image, np.float32).reshape(1, 1, 28, 28) / 255
    probabilities = session.run(["probabilities"], {"image": x})[0][0]
    top = np.argsort(-probabilities)[:3]
    return jsonify(results=[{"top_k": [{"index": int(i), "label": str(i),
                                        "probability": float(probabilities[i])} for i in top]}])


@app.get("/readyz")
def readyz():
    return {"status": "ready"}
