package install

import apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

func crdEstablished(conds []apiextv1.CustomResourceDefinitionCondition) bool {
	for _, c := range conds {
		if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
			return true
		}
	}
	return false
}
