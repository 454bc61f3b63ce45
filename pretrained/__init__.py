"""The models trained here (the files of this folder) and the tooling that makes and measures them.

Their short names (`--network=garments`) are networks.snapshot.SHIPPED_MODELS, beside the snapshot loader that every
script and the app read them through. See pretrained/README.md for how each was trained and what it measures.
"""
