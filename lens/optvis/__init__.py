"""Feature visualisation on a bundle's gradient graph, in the spirit of Lucid/Lucent's optvis:
`objectives` say what to maximise, `transforms` are the image operations that regularise the
search, and `render` runs gradient ascent. numpy and onnxruntime only."""
