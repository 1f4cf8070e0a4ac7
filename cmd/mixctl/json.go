package main

import (
	"bytes"
	"encoding/json"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonValue turns a proto message into plain JSON values with protojson's field names
// (snake_case), but with 64-bit integers as JSON numbers instead of protojson's quoted
// strings, so that `jq '.steps_done > 1000'` compares numbers. Every `mixture` whose
// domains are known (from the message's own spec, or from domains) gets a
// `mixture_by_domain` object beside it.
func jsonValue(m proto.Message, domains []string) (any, error) {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	v = numberize(v, m.ProtoReflect().Descriptor())
	nameMixtures(v, domains)
	return v, nil
}

func numberize(v any, md protoreflect.MessageDescriptor) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for name, val := range obj {
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			continue
		}
		switch {
		case fd.IsMap():
			if m, ok := val.(map[string]any); ok {
				for k, x := range m {
					m[k] = numberizeScalar(x, fd.MapValue())
				}
			}
		case fd.IsList():
			if l, ok := val.([]any); ok {
				for i := range l {
					l[i] = numberizeScalar(l[i], fd)
				}
			}
		default:
			obj[name] = numberizeScalar(val, fd)
		}
	}
	return obj
}

func numberizeScalar(x any, fd protoreflect.FieldDescriptor) any {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if s, ok := x.(string); ok {
			return json.Number(s)
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return numberize(x, fd.Message())
	}
	return x
}

// nameMixtures walks v and adds mixture_by_domain beside every mixture of the domains'
// length; a spec (or a domains list) met on the way sets the domains for what is below it.
func nameMixtures(v any, domains []string) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			nameMixtures(e, domains)
		}
	case map[string]any:
		if d := domainsOf(x); d != nil {
			domains = d
		}
		if mix, ok := x["mixture"].([]any); ok && len(mix) == len(domains) && len(domains) > 0 {
			named := make(map[string]any, len(mix))
			for i, w := range mix {
				named[domains[i]] = w
			}
			x["mixture_by_domain"] = named
		}
		for k, e := range x {
			if k != "mixture_by_domain" {
				nameMixtures(e, domains)
			}
		}
	}
}

// domainsOf finds the domain names an object carries: its spec's, its study's spec's, or
// its own domains list (names, or Domain objects).
func domainsOf(obj map[string]any) []string {
	if st, ok := obj["study"].(map[string]any); ok {
		obj = st
	}
	if spec, ok := obj["spec"].(map[string]any); ok {
		obj = spec
	}
	list, ok := obj["domains"].([]any)
	if !ok {
		return nil
	}
	var names []string
	for _, d := range list {
		switch d := d.(type) {
		case string:
			names = append(names, d)
		case map[string]any:
			if n, ok := d["name"].(string); ok {
				names = append(names, n)
			}
		}
	}
	if len(names) != len(list) {
		return nil
	}
	return names
}
