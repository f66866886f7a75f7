"""MoEfication's second half: pick experts per token and compute only those.

``routers``: how a token's experts are chosen (similarity, a trained MLP, the oracle);
``sample``: the MLP inputs, activations and co-activation counts routers are built from;
``hooks``: routed inference on any supported model, by masking unselected experts' neurons;
``routed_mlp``: a gated MLP module that computes only the selected experts.
"""
