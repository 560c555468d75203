package shim

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// A minimal FastCGI responder client (https://fastcgi-archives.github.io/FastCGI_Specification.html), enough to
// run one PHP script on php-fpm and tell a completed request (FCGI_END_REQUEST received) from one whose worker
// was killed (the connection closes first). Talking FastCGI directly keeps nginx out of the php-fpm tests.
const (
	fcgiBeginRequest = 1
	fcgiEndRequest   = 3
	fcgiParams       = 4
	fcgiStdin        = 5
	fcgiStdout       = 6
	fcgiStderr       = 7
	fcgiResponder    = 1
)

var errNoEndRequest = errors.New("connection closed before FCGI_END_REQUEST")

func fcgiRecord(w io.Writer, typ uint8, content []byte) error {
	h := [8]byte{1, typ, 0, 1}
	binary.BigEndian.PutUint16(h[4:], uint16(len(content)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(content)
	return err
}

func fcgiParamsBody(params map[string]string) []byte {
	var b bytes.Buffer
	putLen := func(n int) {
		if n < 128 {
			b.WriteByte(byte(n))
			return
		}
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(n)|1<<31)
		b.Write(l[:])
	}
	for k, v := range params {
		putLen(len(k))
		putLen(len(v))
		b.WriteString(k)
		b.WriteString(v)
	}
	return b.Bytes()
}

// fcgiGet runs script on the php-fpm listening at addr and returns its stdout (headers and body).
func fcgiGet(addr, script string, timeout time.Duration) ([]byte, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	w := bufio.NewWriter(conn)
	begin := []byte{0, fcgiResponder, 0, 0, 0, 0, 0, 0}
	params := fcgiParamsBody(map[string]string{
		"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/" + script, "REQUEST_METHOD": "GET",
		"SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1",
	})
	for _, rec := range []struct {
		typ     uint8
		content []byte
	}{{fcgiBeginRequest, begin}, {fcgiParams, params}, {fcgiParams, nil}, {fcgiStdin, nil}} {
		if err := fcgiRecord(w, rec.typ, rec.content); err != nil {
			return nil, err
		}
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	var stdout bytes.Buffer
	for {
		var h [8]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return stdout.Bytes(), fmt.Errorf("%w: %w", errNoEndRequest, err)
		}
		body := make([]byte, int(binary.BigEndian.Uint16(h[4:]))+int(h[6]))
		if _, err := io.ReadFull(r, body); err != nil {
			return stdout.Bytes(), fmt.Errorf("%w: %w", errNoEndRequest, err)
		}
		body = body[:binary.BigEndian.Uint16(h[4:])]
		switch h[1] {
		case fcgiStdout:
			stdout.Write(body)
		case fcgiStderr:
		case fcgiEndRequest:
			return stdout.Bytes(), nil
		}
	}
}
