package bind

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"unicode"
)

// sfield is a struct field as encoding/json sees it.
type sfield struct {
	name     string
	tagged   bool  // name comes from a json tag
	index    []int // as reflect.Type.FieldByIndex
	typ      reflect.Type
	required bool // no omitempty or omitzero, and not a pointer
	quoted   bool // the ",string" option applies
}

// structFields returns the fields of t that encoding/json decodes, in
// field order, following its rules (typeFields in encoding/json): exported
// fields named by their json tags or Go names, untagged embedded structs
// flattened, and of fields with the same name the shallowest, else the
// tagged one, else none, whose name then is ignored.
func structFields(t reflect.Type) (fields []sfield, ignored []string) {
	type embedded struct {
		typ   reflect.Type
		index []int
	}
	var all []sfield
	next := []embedded{{typ: t}}
	visited := map[reflect.Type]bool{}
	var count, nextCount map[reflect.Type]int
	for len(next) > 0 {
		current := next
		next = nil
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, e := range current {
			if visited[e.typ] {
				continue
			}
			visited[e.typ] = true
			for i := range e.typ.NumField() {
				sf := e.typ.Field(i)
				if sf.Anonymous {
					t := sf.Type
					if t.Kind() == reflect.Pointer {
						t = t.Elem()
					}
					if !sf.IsExported() && t.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !isValidTag(name) {
					name = ""
				}
				index := append(slices.Clip(e.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					if nextCount[ft]++; nextCount[ft] == 1 {
						next = append(next, embedded{ft, index})
					}
					continue
				}
				f := sfield{name: cmp.Or(name, sf.Name), tagged: name != "", index: index, typ: sf.Type,
					required: sf.Type.Kind() != reflect.Pointer}
				for o := range strings.SplitSeq(opts, ",") {
					switch o {
					case "omitempty", "omitzero":
						f.required = false
					case "string":
						switch ft.Kind() {
						case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
							reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
							reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
							f.quoted = true
						}
					}
				}
				all = append(all, f)
				if count[e.typ] > 1 {
					all = append(all, f) // embedded twice at this depth: annihilates
				}
			}
		}
	}
	slices.SortFunc(all, func(a, b sfield) int {
		return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(len(a.index), len(b.index)),
			cmp.Compare(untagged(a), untagged(b)), slices.Compare(a.index, b.index))
	})
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].name == all[i].name {
			j++
		}
		if j-i > 1 && len(all[i].index) == len(all[i+1].index) && all[i].tagged == all[i+1].tagged {
			ignored = append(ignored, all[i].name)
		} else {
			fields = append(fields, all[i])
		}
		i = j
	}
	slices.SortFunc(fields, func(a, b sfield) int { return slices.Compare(a.index, b.index) })
	return fields, ignored
}

func untagged(f sfield) int {
	if f.tagged {
		return 0
	}
	return 1
}

// isValidTag is encoding/json's test of a json tag's name.
func isValidTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
