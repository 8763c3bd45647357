"""The HTTP ceiling: Flask under the same gunicorn settings, reading the upload and answering a
constant JSON as large as /predict's answer to the same image (bench/reply.json, recorded from
the service), so that the only difference from /predict is the model work."""
from pathlib import Path

from flask import Flask, Response, request

REPLY = Path(__file__).with_name("reply.json").read_bytes()
app = Flask(__name__)


@app.post("/predict")
def predict():
    request.get_data()   # read the body, as any handler must; no parsing
    return Response(REPLY, mimetype="application/json")


@app.get("/readyz")
def readyz():
    return {"status": "ready"}
