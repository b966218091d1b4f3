package gorillastore

import "testing"

// The three-way merge without a service: the same rules as the other adapters.
func TestMerge(t *testing.T) {
	b := func(s string) []byte {
		if s == "" {
			return nil
		}
		return []byte(s)
	}
	for _, c := range []struct{ base, theirs, mine, want string }{
		{`["a"]`, `["a","b"]`, `["a","c"]`, `["a","b","c"]`}, // both added an item: both kept
		{`["a","b"]`, `["a","b","c"]`, `["b"]`, `["b","c"]`}, // mine removed a, theirs added c
		{`1`, `2`, `1`, `2`},                                         // only theirs changed
		{`1`, `1`, `3`, `3`},                                         // only mine changed
		{``, `{"x":1}`, `{"y":2}`, `{"x":1,"y":2}`},                  // both created an object
		{`{"k":[1]}`, `{"k":[1,2]}`, `{"k":[1,3]}`, `{"k":[1,2,3]}`}, // nested
		{`"s"`, ``, `"s"`, ``},                                       // deleted by theirs, unchanged by mine
	} {
		got, err := merge(b(c.base), b(c.theirs), b(c.mine))
		if err != nil || string(got) != c.want {
			t.Errorf("merge(%s, %s, %s) = %s, %v; want %s", c.base, c.theirs, c.mine, got, err, c.want)
		}
	}
	if _, err := merge([]byte(`1`), []byte(`2`), []byte(`3`)); err == nil {
		t.Error("one scalar set to two values must conflict")
	}
}
