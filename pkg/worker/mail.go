package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/scalestack/scalestack/pkg/app"
)

// mailTemplates are the e-mails the worker sends. Each is a whole message,
// headers included, with CRLF line ends added when it is rendered. Text in
// a header goes through hdr (RFC 2047 when it is not plain printable
// ASCII), so that no value, from a job or from the store (a post's title
// may hold a line break), can add a header.
const mailTemplates = `
{{define "welcome"}}From: scalestack blog <{{.From}}>
To: {{hdr .Name}} <{{.To}}>
Subject: {{hdr (print "Welcome to the blog, " .Name)}}
Date: {{.Date}}
Message-ID: <{{.ID}}@scalestack.invalid>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello {{.Name}},

your account is ready. Write your first post at /new.
{{end}}
{{define "comment"}}From: scalestack blog <{{.From}}>
To: {{hdr .Name}} <{{.To}}>
Subject: {{hdr (print .Actor " commented on \"" .Title "\"")}}
Date: {{.Date}}
Message-ID: <{{.ID}}@scalestack.invalid>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello {{.Name}},

{{.Actor}} wrote a comment on your post "{{.Title}}": /posts/{{.PostID}}
{{end}}`

// mail is what a template is rendered with.
type mail struct {
	ID, From, To, Name, Date string
	Actor, Title, PostID     string
}

// mailer writes e-mails to the outbox folder, or sends them over SMTP.
// Sending twice for one job id has one effect: the file (or, for SMTP, a
// marker file) named by the job id is checked first.
type mailer struct {
	outbox string
	smtp   string
	from   string
	tmpl   *template.Template
	log    *slog.Logger
}

func newMailer(outbox, smtpAddr, from string, log *slog.Logger) *mailer {
	return &mailer{outbox: outbox, smtp: smtpAddr, from: from, log: log,
		tmpl: template.Must(template.New("mail").Funcs(template.FuncMap{"hdr": app.HeaderText}).Parse(mailTemplates))}
}

// send renders template name for m and delivers it once per m.ID.
func (ml *mailer) send(ctx context.Context, name string, m mail) error {
	if strings.ContainsAny(m.ID, `/\.`) || m.ID == "" {
		return fmt.Errorf("mail: job id %q cannot name a file", m.ID)
	}
	if err := app.CheckEmail(m.To); err != nil || strings.ContainsAny(m.Name, "\r\n<>") {
		return fmt.Errorf("mail: bad recipient %q <%q>: %w", m.Name, m.To, app.ErrBadJob)
	}
	m.From = ml.from
	var b bytes.Buffer
	if err := ml.tmpl.ExecuteTemplate(&b, name, m); err != nil {
		return fmt.Errorf("mail: render %s: %w", name, err)
	}
	msg := bytes.ReplaceAll(bytes.TrimLeft(b.Bytes(), "\n"), []byte("\n"), []byte("\r\n"))
	if err := os.MkdirAll(ml.outbox, 0o755); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	if ml.smtp == "" {
		return ml.writeOnce(filepath.Join(ml.outbox, m.ID+".eml"), msg)
	}
	marker := filepath.Join(ml.outbox, m.ID+".sent")
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	if err := ml.sendSMTP(ctx, m.To, msg); err != nil {
		return err
	}
	return ml.writeOnce(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"))
}

// writeOnce writes data to path unless it exists, through a temporary file
// and a rename, so that a crash never leaves half an e-mail.
func (ml *mailer) writeOnce(path string, data []byte) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp, err := os.CreateTemp(ml.outbox, ".mail-*")
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("mail: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	return nil
}

// sendSMTP delivers msg over SMTP. net/smtp has no context, so the
// connection's deadline is the context's.
func (ml *mailer) sendSMTP(ctx context.Context, to string, msg []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ml.smtp)
	if err != nil {
		return fmt.Errorf("mail: smtp: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(ml.smtp)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("mail: smtp: %w", err)
	}
	defer c.Close()
	err = errors.Join(c.Mail(ml.from), c.Rcpt(to))
	if err != nil {
		return fmt.Errorf("mail: smtp: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("mail: smtp: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("mail: smtp: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("mail: smtp: %w", err)
	}
	return c.Quit()
}
