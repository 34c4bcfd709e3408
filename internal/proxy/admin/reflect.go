package admin

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

func protoName(s string) protoreflect.Name { return protoreflect.Name(s) }

func anyOf(m proto.Message) (*anypb.Any, error) { return anypb.New(m) }
