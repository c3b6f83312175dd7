"""Photos and what drives a unit in them: the offline photo set, dataset examples, activation indexes over folders, and the engines that run them."""
