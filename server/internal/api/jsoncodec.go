package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonCodec is the API's JSON codec: connect-go's (protojson, unknown
// fields ignored, so a client may be newer than the server), except that an
// enum value given by a name its enum does not define is refused, naming
// the field. protojson, told to ignore unknown fields, drops such a value
// silently: {"status": "NOPE"} would list every Run instead of failing.
// (Numbers outside an enum are refused by the defined_only rules.)
type jsonCodec struct{ name string }

// jsonCodecs replace connect-go's JSON codecs, under both their names.
func jsonCodecs() []connect.HandlerOption {
	return []connect.HandlerOption{connect.WithCodec(jsonCodec{"json"}), connect.WithCodec(jsonCodec{"json; charset=utf-8"})}
}

func (c jsonCodec) Name() string { return c.name }

func (c jsonCodec) Marshal(msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", msg)
	}
	return protojson.MarshalOptions{}.Marshal(m)
}

func (c jsonCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", msg)
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, m)
}

func (c jsonCodec) MarshalStable(msg any) ([]byte, error) {
	b, err := c.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func (c jsonCodec) IsBinary() bool { return false }

func (c jsonCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto.Message", msg)
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", msg, err)
	}
	var raw any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", msg, err)
	}
	if err := checkEnumNames(raw, m.ProtoReflect().Descriptor(), ""); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return nil
}

// checkEnumNames walks a decoded JSON value along the message descriptor
// md and refuses the first enum field whose value is a name md's enum does
// not define. Fields md does not know are skipped, as protojson skips them.
func checkEnumNames(v any, md protoreflect.MessageDescriptor, path string) error {
	obj, ok := v.(map[string]any)
	if !ok || strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		// Well-known types have JSON forms of their own, with no enums.
		return nil
	}
	for key, val := range obj {
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByTextName(key)
		}
		if fd == nil || val == nil {
			continue
		}
		name := join(path, string(fd.Name()))
		switch {
		case fd.IsMap():
			vals, _ := val.(map[string]any)
			for k, e := range vals {
				if err := checkValue(e, fd.MapValue(), name+"["+k+"]"); err != nil {
					return err
				}
			}
		case fd.IsList():
			items, _ := val.([]any)
			for i, e := range items {
				if err := checkValue(e, fd, fmt.Sprintf("%s[%d]", name, i)); err != nil {
					return err
				}
			}
		default:
			if err := checkValue(val, fd, name); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkValue(v any, fd protoreflect.FieldDescriptor, path string) error {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		s, ok := v.(string)
		if !ok {
			return nil
		}
		ed := fd.Enum()
		if ed.Values().ByName(protoreflect.Name(s)) != nil {
			return nil
		}
		var names []string
		for i := range ed.Values().Len() {
			names = append(names, string(ed.Values().Get(i).Name()))
		}
		return fmt.Errorf("%s: %q is not a value of %s (one of %s)", path, s, ed.Name(), strings.Join(names, ", "))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkEnumNames(v, fd.Message(), path)
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
