package deadline

import (
	"net"
	"testing"
	"time"
)

// A deadline that is a little early is kept; one too early, too late or
// unset is moved.
func TestWithinMovesOnlyWhenItMust(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var r Read
	now := time.Unix(1000, 0)
	r.Within(a, now, 10*time.Second)
	if want := now.Add(10 * time.Second); !r.at.Equal(want) {
		t.Fatalf("unset: deadline %v, want %v", r.at, want)
	}
	set := r.at
	r.Within(a, now.Add(500*time.Millisecond), 10*time.Second)
	if !r.at.Equal(set) {
		t.Fatalf("0.5 s later: deadline moved to %v, want kept at %v", r.at, set)
	}
	r.Within(a, now.Add(2*time.Second), 10*time.Second)
	if want := now.Add(12 * time.Second); !r.at.Equal(want) {
		t.Fatalf("2 s later: deadline %v, want %v", r.at, want)
	}
	r.Within(a, now, time.Second)
	if want := now.Add(time.Second); !r.at.Equal(want) {
		t.Fatalf("a shorter timeout: deadline %v, want %v", r.at, want)
	}
}

func TestSlack(t *testing.T) {
	if Slack(100*time.Millisecond) != 10*time.Millisecond || Slack(time.Minute) != time.Second {
		t.Fatal("Slack: a tenth, at most a second")
	}
}
