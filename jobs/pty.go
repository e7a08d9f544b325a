package jobs

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// TTY is a job's pseudo-terminal: tools that check for a terminal (colour,
// progress bars, spinners) then print as they would for a person. The
// default is a pipe.
type TTY struct {
	Cols, Rows int // 0, 0: no terminal
}

// Default size of a job's terminal.
const (
	defaultCols = 120
	defaultRows = 40
)

// UnmarshalYAML takes tty: true, or tty: {cols: 160, rows: 50}.
func (t *TTY) UnmarshalYAML(unmarshal func(any) error) error {
	var on bool
	if err := unmarshal(&on); err == nil {
		if on {
			*t = TTY{Cols: defaultCols, Rows: defaultRows}
		}
		return nil
	}
	var size struct {
		Cols int `yaml:"cols"`
		Rows int `yaml:"rows"`
	}
	if err := unmarshal(&size); err != nil {
		return errors.New("want true, false or {cols: N, rows: N}")
	}
	if size.Cols == 0 {
		size.Cols = defaultCols
	}
	if size.Rows == 0 {
		size.Rows = defaultRows
	}
	if size.Cols < 20 || size.Cols > 1000 || size.Rows < 5 || size.Rows > 500 {
		return fmt.Errorf("cols %d and rows %d: want 20 to 1000 columns and 5 to 500 rows", size.Cols, size.Rows)
	}
	*t = TTY{Cols: size.Cols, Rows: size.Rows}
	return nil
}

// On reports whether the job runs in a terminal.
func (t TTY) On() bool { return t.Cols > 0 }

// Env is what a program in the terminal reads of it.
func (t TTY) Env() []string {
	return []string{"TERM=xterm-256color", "COLUMNS=" + strconv.Itoa(t.Cols), "LINES=" + strconv.Itoa(t.Rows)}
}

// openPTY opens a pseudo-terminal of size t: the controller, which the
// runner reads, and the terminal, the job's stdin, stdout and stderr. The
// terminal sends lines as the program wrote them (\n, not \r\n) and echoes
// nothing. It is not the job's controlling terminal: that would take a
// session of its own, out of reach of the watchdog, which must share the
// job's process group (watchdog.go). Programs that test stdout or stderr
// (isatty, the window size) see a terminal; one that opens /dev/tty (an
// ssh or sudo password prompt) finds none, as under a pipe.
func openPTY(t TTY) (controller, term *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open a terminal: %w", err)
	}
	controller = os.NewFile(uintptr(fd), "/dev/ptmx")
	defer func() {
		if err != nil {
			controller.Close()
		}
	}()
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return nil, nil, fmt.Errorf("unlock the terminal: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		return nil, nil, fmt.Errorf("name the terminal: %w", err)
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	tfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open the terminal: %w", err)
	}
	term = os.NewFile(uintptr(tfd), name)
	ws := &unix.Winsize{Row: uint16(t.Rows), Col: uint16(t.Cols)}
	if err := unix.IoctlSetWinsize(tfd, unix.TIOCSWINSZ, ws); err != nil {
		term.Close()
		return nil, nil, fmt.Errorf("size the terminal: %w", err)
	}
	tio, err := unix.IoctlGetTermios(tfd, unix.TCGETS)
	if err == nil {
		tio.Oflag &^= unix.ONLCR
		tio.Lflag &^= unix.ECHO | unix.ECHONL
		err = unix.IoctlSetTermios(tfd, unix.TCSETS, tio)
	}
	if err != nil {
		term.Close()
		return nil, nil, fmt.Errorf("set up the terminal: %w", err)
	}
	return controller, term, nil
}
