package main

import "github.com/trellis-mesh/trellis/internal/registry"

type registryEndpoint = registry.Endpoint
