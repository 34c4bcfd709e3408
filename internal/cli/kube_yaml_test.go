package cli

import "sigs.k8s.io/yaml"

func yamlToPod(s string, into any) error { return yaml.UnmarshalStrict([]byte(s), into) }
