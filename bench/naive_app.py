"""The naive baseline: Flask + torch eager serving the same checkpoint the way a tutorial would
(no thread settings, no batching, Pillow decode, /255, model, softmax, JSON)."""
import io

import torch
from flask import Flask, jsonify, request
from PIL import Image

from training.train import load_model

model = load_model(torch.load("models/mnist-cnn/checkpoint.pt", weights_only=False))
app = Flask(__name__)


@app.post("/predict")
def predict():
    image = Image.open(io.BytesIO(request.files["file"].read())).convert("L").resize((28, 28))
    x = torch.tensor(list(image.getdata()), dtype=torch.float32).reshape(1, 1, 28, 28) / 255
    with torch.no_grad():
        probabilities = torch.softmax(model(x), dim=1)[0]
    top = torch.topk(probabilities, 3)
    return jsonify(results=[{"top_k": [{"index": int(i), "label": str(int(i)), "probability": float(p)}
                                       for p, i in zip(top.values, top.indices)]}])


@app.get("/readyz")
def readyz():
    return {"status": "ready"}
