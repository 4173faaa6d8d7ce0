"""The Img-Diff algorithm as pure functions: scores and boxes in, decisions with reasons out."""
