package webhook_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// httpsServer serves the handler over TLS 1.2+ on loopback, as the API server reaches the webhook.
func httpsServer(b *testing.B) (*httptest.Server, *http.Client) {
	srv := httptest.NewUnstartedServer(&admission.Webhook{Handler: benchHandler()})
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	b.Cleanup(srv.Close)
	c := srv.Client()
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	return srv, c
}

func postReview(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return io.ErrUnexpectedEOF
	}
	return err
}

// BenchmarkHTTPSThroughput: admissions per second over HTTPS keep-alive connections with as many concurrent
// clients as the API server would use. Bar (docs/design.md#bars): >= 3,000 requests/s on 2 cores.
func BenchmarkHTTPSThroughput(b *testing.B) {
	srv, c := httpsServer(b)
	body := typicalReview()
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := postReview(c, srv.URL, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkHTTPSLatencyAt500rps: an open-loop load of 500 requests/s for 4 s; reports the p50 and p99 latency.
// Bar (docs/design.md#bars): p99 <= 2 ms.
func BenchmarkHTTPSLatencyAt500rps(b *testing.B) {
	srv, c := httpsServer(b)
	body := typicalReview()
	// Warm a pool of connections as the API server keeps one: with a single warm connection, every moment two
	// requests overlap would measure a TLS handshake instead of an admission.
	var warm sync.WaitGroup
	for range 8 {
		warm.Add(1)
		go func() {
			defer warm.Done()
			for range 20 {
				_ = postReview(c, srv.URL, body)
			}
		}()
	}
	warm.Wait()
	for b.Loop() {
		const rate, dur = 500, 4 * time.Second
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / rate)
		end := time.Now().Add(dur)
		for now := range tick.C {
			if now.After(end) {
				break
			}
			wg.Add(1)
			go func(sent time.Time) {
				defer wg.Done()
				if err := postReview(c, srv.URL, body); err != nil {
					b.Error(err)
				}
				d := time.Since(sent)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}(now)
		}
		tick.Stop()
		wg.Wait()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(len(lat)), "requests")
	}
}
