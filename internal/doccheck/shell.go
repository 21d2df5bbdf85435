package doccheck

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// A Command is one simple command of a shell block, as the shell would run
// it: quotes removed, `\` continuations joined, leading VAR=value
// assignments dropped, a shell function of the block (loom() { grpcurl …
// "$@"; }) expanded. $VARs and $(…) are kept as written; the commands of a
// $(…) are Commands of their own.
type Command struct {
	File string
	Line int      // where the command starts
	Args []string // Args[0] is the command's name
	Dir  string   // the working directory, relative to the repository root ("." at the start of each file)
	// Stdin is the body of a here-document (<<'JSON' … JSON), if any.
	Stdin    string
	HasStdin bool
	Via      string // the shell function it was called through, if any
	// Background: it ends with & (a subshell's & counts for its commands).
	Background bool
	// Comment is the nearest comment above it in its block, or on its line.
	Comment string
}

func (c Command) String() string { return strings.Join(c.Args, " ") }

// A block is a fenced shell block of a Markdown file.
type block struct {
	line int // line of its first content line
	text string
}

// shellLangs are the info strings of fenced blocks whose content is shell.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true, "zsh": true, "shell-session": true}

// blocks returns the fenced shell blocks of a Markdown file. The content of
// a console block is its `$ ` lines (and their continuations), the prompt
// removed: the rest is output.
func blocks(src []byte) []block {
	var out []block
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var (
		n              int
		fence, indent  string
		lang           string
		inBlock, shell bool
		cur            []string
		start          int
	)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " \t")
		if !inBlock {
			for _, f := range []string{"```", "~~~"} {
				if strings.HasPrefix(trimmed, f) {
					inBlock, indent = true, line[:len(line)-len(trimmed)]
					fence = trimmed[:len(trimmed)-len(strings.TrimLeft(trimmed, f[:1]))]
					info := strings.Fields(trimmed[len(fence):])
					lang = ""
					if len(info) > 0 {
						lang = strings.ToLower(strings.Trim(info[0], "{}."))
					}
					shell, cur, start = shellLangs[lang], nil, n+1
					break
				}
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) && strings.TrimSpace(strings.TrimLeft(trimmed, fence[:1])) == "" {
			if shell {
				out = append(out, block{line: start, text: strings.Join(cur, "\n") + "\n"})
			}
			inBlock = false
			continue
		}
		line = strings.TrimPrefix(line, indent)
		if lang == "console" || lang == "shell-session" {
			cont := len(cur) > 0 && strings.HasSuffix(cur[len(cur)-1], "\\")
			switch {
			case strings.HasPrefix(line, "$ "):
				line = line[2:]
			case cont:
			default:
				line = "" // output
			}
		}
		cur = append(cur, line)
	}
	return out
}

// A shTok is a token of the shell lexer: a word or an operator.
type shTok struct {
	op   string // "" for a word; ";", "&", "&&", "|", "||", "(", ")", "\n", "<<", ">", …
	text string // a word, quotes removed; for "<<", the here-document's body
	subs []sub  // the $(…) of a word
	line int
}

type sub struct {
	text string
	line int
}

// lex splits shell source into words and operators, the way sh does for
// what docs use: quotes, backslashes, `\` continuations, comments, $(…)
// (kept in the word and returned as subs), here-documents.
func lex(src string, line int) ([]shTok, error) {
	var (
		toks    []shTok
		word    strings.Builder
		inWord  bool
		subs    []sub
		wline   int
		pending []int // indexes of "<<" tokens whose body starts after the next newline
		delimOf = map[int]string{}
		dashOf  = map[int]bool{}
		wantDel = -1 // index of a "<<" token waiting for its delimiter word
	)
	flush := func() {
		if !inWord {
			return
		}
		toks = append(toks, shTok{text: word.String(), subs: subs, line: wline})
		if wantDel >= 0 {
			delimOf[wantDel] = word.String()
			pending = append(pending, wantDel)
			toks = toks[:len(toks)-1]
			wantDel = -1
		}
		word.Reset()
		inWord, subs = false, nil
	}
	startWord := func() {
		if !inWord {
			inWord, wline = true, line
		}
	}
	// dollarParen reads a $(…) starting at src[i:] == "$(" and returns its
	// inner text and the index after its ")".
	dollarParen := func(i int) (string, int, error) {
		depth, j := 0, i+1
		for ; j < len(src); j++ {
			switch src[j] {
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					return src[i+2 : j], j + 1, nil
				}
			case '\'':
				k := strings.IndexByte(src[j+1:], '\'')
				if k < 0 {
					return "", 0, fmt.Errorf("line %d: unterminated ' in $(…)", line)
				}
				j += k + 1
			case '"':
				for j++; j < len(src) && src[j] != '"'; j++ {
					if src[j] == '\\' {
						j++
					}
				}
			}
		}
		return "", 0, fmt.Errorf("line %d: unterminated $(", line)
	}
	// substitute reads the $(…) at src[i:], keeps it as a command of its
	// own and, as text, in the word; it returns the index after its ")".
	substitute := func(i int) (int, error) {
		inner, next, err := dollarParen(i)
		if err != nil {
			return 0, err
		}
		subs = append(subs, sub{inner, line})
		word.WriteString(src[i:next])
		line += strings.Count(inner, "\n")
		return next, nil
	}
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\\' && i+1 < len(src) && src[i+1] == '\n':
			i += 2
			line++
		case c == '\\' && i+1 < len(src):
			startWord()
			word.WriteByte(src[i+1])
			i += 2
		case c == ' ' || c == '\t':
			flush()
			i++
		case c == '\n':
			flush()
			toks = append(toks, shTok{op: "\n", line: line})
			i++
			line++
			for _, p := range pending {
				var body strings.Builder
				for {
					if i >= len(src) {
						return nil, fmt.Errorf("line %d: here-document %q never ends", toks[p].line, delimOf[p])
					}
					end := strings.IndexByte(src[i:], '\n')
					if end < 0 {
						end = len(src) - i
					}
					l := src[i : i+end]
					i += end + 1
					line++
					if dashOf[p] {
						l = strings.TrimLeft(l, "\t")
					}
					if l == delimOf[p] {
						break
					}
					body.WriteString(l + "\n")
				}
				toks[p].text = body.String()
			}
			pending = nil
		case c == '#' && !inWord:
			start := i
			for i < len(src) && src[i] != '\n' {
				i++
			}
			toks = append(toks, shTok{op: "#", text: src[start+1 : i], line: line})
		case c == '\'':
			startWord()
			j := strings.IndexByte(src[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("line %d: unterminated '", line)
			}
			s := src[i+1 : i+1+j]
			word.WriteString(s)
			line += strings.Count(s, "\n")
			i += j + 2
		case c == '"':
			startWord()
			i++
			for ; i < len(src) && src[i] != '"'; i++ {
				switch {
				case src[i] == '\\' && i+1 < len(src) && strings.IndexByte("\"\\$`\n", src[i+1]) >= 0:
					if src[i+1] != '\n' {
						word.WriteByte(src[i+1])
					} else {
						line++
					}
					i++
				case strings.HasPrefix(src[i:], "$("):
					next, err := substitute(i)
					if err != nil {
						return nil, err
					}
					i = next - 1
				default:
					if src[i] == '\n' {
						line++
					}
					word.WriteByte(src[i])
				}
			}
			if i >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated \"", wline)
			}
			i++
		case strings.HasPrefix(src[i:], "$("):
			startWord()
			next, err := substitute(i)
			if err != nil {
				return nil, err
			}
			i = next
		case strings.IndexByte(";&|()<>", c) >= 0:
			flush()
			op := string(c)
			for _, two := range []string{"&&", "||", "<<-", "<<", ">>", ";;"} {
				if strings.HasPrefix(src[i:], two) {
					op = two
					break
				}
			}
			if op == "<<-" {
				dashOf[len(toks)] = true
				op = "<<"
				i++
			}
			if op == "<<" {
				wantDel = len(toks)
			}
			toks = append(toks, shTok{op: op, line: line})
			i += len(op)
		default:
			startWord()
			word.WriteByte(c)
			i++
		}
	}
	flush()
	if len(pending) > 0 || wantDel >= 0 {
		return nil, fmt.Errorf("line %d: here-document without a body", line)
	}
	return toks, nil
}

// shellParser turns the tokens of one file's blocks into Commands, keeping the
// shell functions and the working directory from block to block.
type shellParser struct {
	file    string
	funcs   map[string][]string // shell function → its one command, "$@" included
	dirs    []string            // working directory stack: ( … ) pushes
	cmds    []Command
	errs    []Problem
	comment string // the last comment of the block
}

func newParser(file string) *shellParser {
	return &shellParser{file: file, funcs: map[string][]string{}, dirs: []string{"."}}
}

func (p *shellParser) dir() string { return p.dirs[len(p.dirs)-1] }

func (p *shellParser) block(b block) {
	toks, err := lex(b.text, b.line)
	if err != nil {
		p.errs = append(p.errs, Problem{File: p.file, Line: b.line, Msg: "cannot read this shell block: " + err.Error()})
		return
	}
	p.dirs = []string{"."} // each block starts at the repository's root
	p.comment = ""
	p.tokens(toks)
}

// tokens parses a token list into p.cmds.
func (p *shellParser) tokens(toks []shTok) {
	var (
		words []shTok
		stdin *shTok
	)
	end := func(background bool) {
		if len(words) > 0 {
			p.command(words, stdin, background)
		}
		words, stdin = nil, nil
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch t.op {
		case "":
			// a group's braces are not commands
			if (t.text == "{" || t.text == "}") && len(words) == 0 {
				continue
			}
			words = append(words, t)
		case "(":
			if len(words) == 1 && i+1 < len(toks) && toks[i+1].op == ")" {
				// name() { body; }
				name := words[0].text
				words = nil
				j := i + 2
				for j < len(toks) && toks[j].op == "\n" {
					j++
				}
				if j >= len(toks) || toks[j].text != "{" {
					p.errs = append(p.errs, Problem{File: p.file, Line: t.line, Msg: "shell function " + name + ": only name() { command; } is understood"})
					return
				}
				k := j + 1
				for k < len(toks) && (toks[k].op != "" || toks[k].text != "}" || (toks[k-1].op != ";" && toks[k-1].op != "\n")) {
					k++
				}
				body := newParser(p.file)
				body.dirs = []string{p.dir()}
				body.funcs = p.funcs
				body.tokens(toks[j+1 : k])
				if len(body.cmds) != 1 {
					p.errs = append(p.errs, Problem{File: p.file, Line: t.line, Msg: "shell function " + name + ": only a body of one command is understood"})
				} else {
					// Its body is checked where it is called, with the call's arguments.
					p.funcs[name] = body.cmds[0].Args
				}
				i = k
				continue
			}
			end(false)
			p.dirs = append(p.dirs, p.dir())
		case ")":
			end(i+1 < len(toks) && toks[i+1].op == "&")
			if len(p.dirs) > 1 {
				p.dirs = p.dirs[:len(p.dirs)-1]
			}
		case "<<":
			t := t
			stdin = &t
		case "<", ">", ">>":
			i++ // the file
		case "#":
			p.comment = strings.TrimSpace(t.text)
		default: // ; & && | || \n ;;
			end(t.op == "&")
		}
	}
	end(false)
}

func (p *shellParser) command(words []shTok, stdin *shTok, background bool) {
	for _, w := range words {
		for _, s := range w.subs {
			toks, err := lex(s.text+"\n", s.line)
			if err != nil {
				p.errs = append(p.errs, Problem{File: p.file, Line: s.line, Msg: "cannot read $(…): " + err.Error()})
				continue
			}
			inner := newParser(p.file)
			inner.dirs, inner.funcs, inner.comment = []string{p.dir()}, p.funcs, p.comment
			inner.tokens(toks)
			p.cmds = append(p.cmds, inner.cmds...)
			p.errs = append(p.errs, inner.errs...)
		}
	}
	for len(words) > 0 && isAssignment(words[0].text) {
		words = words[1:]
	}
	if len(words) == 0 {
		return
	}
	c := Command{File: p.file, Line: words[0].line, Dir: p.dir(), Background: background, Comment: p.comment}
	for _, w := range words {
		c.Args = append(c.Args, w.text)
	}
	if stdin != nil {
		c.Stdin, c.HasStdin = stdin.text, true
	}
	if body, ok := p.funcs[c.Args[0]]; ok {
		var args []string
		for _, a := range body {
			if a == "$@" {
				args = append(args, c.Args[1:]...)
			} else {
				args = append(args, a)
			}
		}
		c.Via, c.Args = c.Args[0], args
	}
	if c.Args[0] == "cd" && len(c.Args) == 2 {
		p.dirs[len(p.dirs)-1] = path.Join(p.dir(), c.Args[1])
	}
	p.cmds = append(p.cmds, c)
}

func isAssignment(w string) bool {
	eq := strings.IndexByte(w, '=')
	if eq <= 0 {
		return false
	}
	for i, r := range w[:eq] {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Commands returns every command of the fenced shell blocks of a Markdown
// file, and the problems of reading them.
func Commands(file string, src []byte) ([]Command, []Problem) {
	p := newParser(file)
	for _, b := range blocks(src) {
		p.block(b)
	}
	return p.cmds, p.errs
}

// inlineSpans returns the code spans (`…`) of a Markdown file outside its
// fenced blocks, a span broken over lines joined with spaces.
func inlineSpans(src []byte) []block {
	lines := strings.Split(string(src), "\n")
	inBlock, fence := false, ""
	for i, l := range lines {
		t := strings.TrimLeft(l, " \t")
		switch {
		case !inBlock && (strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~")):
			inBlock, fence = true, t[:len(t)-len(strings.TrimLeft(t, t[:1]))]
			lines[i] = ""
		case inBlock:
			if strings.HasPrefix(t, fence) && strings.TrimSpace(strings.TrimLeft(t, fence[:1])) == "" {
				inBlock = false
			}
			lines[i] = ""
		}
	}
	text := strings.Join(lines, "\n")
	var out []block
	for i := 0; i < len(text); i++ {
		if text[i] != '`' {
			continue
		}
		n := 1
		for i+n < len(text) && text[i+n] == '`' {
			n++
		}
		delim := text[i : i+n]
		end := strings.Index(text[i+n:], delim)
		if end < 0 || strings.Contains(text[i+n:i+n+end], "\n\n") {
			i += n - 1
			continue
		}
		span := text[i+n : i+n+end]
		out = append(out, block{line: strings.Count(text[:i], "\n") + 1, text: strings.Join(strings.Fields(span), " ")})
		i += n + end + n - 1
	}
	return out
}

// InlineCommands returns the commands of a Markdown file's code spans that
// are invocations of what Loom has (see inlineCommand), each read on its
// own: no shell function of a block applies.
func InlineCommands(file string, src []byte, isCommand func(Command) bool) []Command {
	var out []Command
	for _, s := range inlineSpans(src) {
		toks, err := lex(s.text+"\n", s.line)
		if err != nil {
			continue // prose, not shell
		}
		p := newParser(file)
		p.tokens(toks)
		for _, c := range p.cmds {
			if isCommand(c) {
				out = append(out, c)
			}
		}
	}
	return out
}
