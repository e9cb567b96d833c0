package kube

// BuildRecipe exposes buildRecipe to the external tests.
const BuildRecipe = buildRecipe
