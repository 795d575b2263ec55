"""relumilp: compile trained ReLU networks into MILPs and solve them to certified global optimality."""
