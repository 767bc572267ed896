package safetensors

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint/atomicfile"
	"github.com/monoquant/monoquant/core/tensor"
)

// The helper process: when this env var names a target path, TestHelperSlowWriter writes a large
// file there, reporting each tensor on stdout; after half of them it waits for its stdin to
// close, so the parent's SIGKILL lands mid-stream however busy the machine is.
const helperEnv = "MONOQUANT_ST_HELPER_TARGET"

const (
	helperTensors     = 24
	helperTensorBytes = 4 << 20 // 96 MB in all
)

func helperEntries() []tensor.Info {
	var infos []tensor.Info
	for i := range helperTensors {
		infos = append(infos, tensor.Info{Name: fmt.Sprintf("layer.%d.weight", i), DType: tensor.F32, Shape: []int{helperTensorBytes / 4}})
	}
	return infos
}

func TestHelperSlowWriter(t *testing.T) {
	target := os.Getenv(helperEnv)
	if target == "" {
		t.Skip("helper process for TestKillDuringWrite")
	}
	w, err := Create(target, helperEntries(), map[string]string{"gen": "new"})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	buf := bytes.Repeat([]byte{0xAB}, helperTensorBytes)
	for i, e := range helperEntries() {
		if err := w.Write(e.Name, buf); err != nil {
			fmt.Println("ERR", err)
			os.Exit(2)
		}
		fmt.Println("wrote", i+1)
		if i+1 == helperTensors/2 {
			io.Copy(io.Discard, os.Stdin) // the parent kills it here, or closes stdin to go on
		}
	}
	if err := w.Commit(); err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	fmt.Println("committed")
	os.Exit(0)
}

// startHelper runs the helper writing target and returns it with a line reader on its stdout
// and its stdin (closing it lets the helper go on past the middle; Wait closes it too).
func startHelper(t *testing.T, target string) (*exec.Cmd, *bufio.Scanner, io.Closer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSlowWriter$")
	cmd.Env = append(os.Environ(), helperEnv+"="+target)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out), in
}

// TestKillDuringWrite SIGKILLs a process halfway through writing a ~100 MB file: the target must
// then hold the previous file byte for byte, or nothing if there was none.
func TestKillDuringWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~100 MB")
	}
	for _, withOld := range []bool{false, true} {
		t.Run(fmt.Sprintf("old_file=%v", withOld), func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "model.safetensors")
			var old []byte
			if withOld {
				writeShard(t, target, "old.tensor")
				old, _ = os.ReadFile(target)
			}
			cmd, lines, _ := startHelper(t, target) // stdin stays open: the helper waits mid-stream
			killAfter := helperTensors / 2
			for lines.Scan() {
				line := lines.Text()
				if strings.HasPrefix(line, "ERR") {
					t.Fatalf("helper: %s", line)
				}
				if n, _ := strconv.Atoi(strings.TrimPrefix(line, "wrote ")); n == killAfter {
					break
				}
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
				t.Fatalf("helper was not killed by the signal (it finished: %v); the test did not exercise a torn write", err)
			}

			// The kill caught the helper mid-write (it had reported killAfter tensors and was
			// stopped by the signal). Its temporary file had no name, so nothing of it is left;
			// where the file system cannot do that, a named partial file is.
			var partial int64
			var left []string
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.Contains(e.Name(), ".tmp-") {
					info, _ := e.Info()
					partial = info.Size()
					left = append(left, e.Name())
				}
			}
			if atomicfile.Unnamed(dir) {
				if len(left) != 0 {
					t.Errorf("the killed writer left %v behind", left)
				}
			} else if partial < int64(killAfter)*helperTensorBytes/2 {
				t.Errorf("temporary file is %d bytes; expected a partial write of about %d tensors", partial, killAfter)
			}

			got, err := os.ReadFile(target)
			switch {
			case !withOld && !os.IsNotExist(err):
				t.Errorf("after the kill the target exists (%d bytes, err %v); want no file", len(got), err)
			case withOld && !bytes.Equal(got, old):
				t.Errorf("after the kill the target is %d bytes, want the old %d-byte file unchanged", len(got), len(old))
			case withOld:
				f, err := Open(target)
				if err != nil {
					t.Fatalf("old file no longer opens: %v", err)
				}
				f.Close()
			}
		})
	}

	// Without a kill the same helper replaces the file completely.
	t.Run("no_kill", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "model.safetensors")
		cmd, lines, stdin := startHelper(t, target)
		stdin.Close()
		var last string
		for lines.Scan() {
			last = lines.Text()
		}
		if err := cmd.Wait(); err != nil || last != "committed" {
			t.Fatalf("helper: %v, last line %q", err, last)
		}
		f, err := Open(target)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n := len(f.Entries()); n != helperTensors || f.Metadata()["gen"] != "new" {
			t.Errorf("new file has %d tensors and metadata %v, want %d and gen=new", n, f.Metadata(), helperTensors)
		}
	})
}
