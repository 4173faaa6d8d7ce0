"""A synthetic ground truth for the difference-area stage: sprites on photographs, one of them swapped.

Each pair knows exactly which object changed and where, so the Img-Diff decision logic can be scored
without any model weights (with oracle scorers built from that knowledge), and so can the weight-free
difference prior.
"""
