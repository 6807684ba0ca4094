"""The platform switch (platforms.py, env.py) and the XLA:CPU formulations behind it: layers,
GroupNorm, dropout and attention with flax's parameters and maths, faster on CPU."""
