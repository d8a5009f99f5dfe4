using System.Buffers;

namespace Overlay.Signaling.Xmpp;

/// <summary>
/// Finds where the next top-level item of an established XMPP stream may end, looking at each byte once however the
/// bytes arrive. <see cref="XmppStreamParser"/> parses a whole item from its start, so calling it after every read of a
/// large stanza that arrives in pieces costs time quadratic in the stanza's size; the connection asks this scanner first
/// and parses once the item is complete. The scanner only tracks markup (tags, quoted attribute values, CDATA sections,
/// nesting depth); everything else, including every error, is the parser's. Where the scanner sees something the parser
/// will refuse (a declaration, a comment, character data at stream level, nesting past the parser's bound), it reports an
/// end there so the parser fails at once.
/// </summary>
internal sealed class XmppItemScanner
{
    private const string CData = "[CDATA[";

    private enum Mode : byte { Text, Lt, StartTag, EndTag, Quote, Bang, CData, Refused }

    private long _scanned;
    private int _depth;
    private Mode _mode;
    private byte _quote, _previous;
    private int _matched; // "[CDATA[" characters matched after "<!", or ']' seen in a row inside CDATA
    private bool _markupSeen;

    /// <summary>Bytes examined since creation (each byte of the stream once, plus what the parser refused): for tests.</summary>
    public long BytesExamined { get; private set; }

    /// <summary>
    /// The next item of <paramref name="window"/> (the front of the connection's unread bytes), parsed by
    /// <paramref name="parser"/> once it is complete; <see cref="XmppToken.NeedMore"/> until then, with the leading
    /// whitespace (keepalives) consumed.
    /// </summary>
    public XmppToken Next(XmppStreamParser parser, ReadOnlySequence<byte> window, out int consumed, out XmppElement? element, out string? error)
    {
        if (parser.HeaderSeen)
        {
            var end = Scan(window);
            if (end < 0)
            {
                element = null;
                error = null;
                consumed = 0;
                if (!_markupSeen)
                {
                    consumed = (int)_scanned;
                    Reset();
                }
                return XmppToken.NeedMore;
            }
            window = window.Slice(0, end);
        }
        var token = Parse(parser, window, out consumed, out element, out error);
        if (token != XmppToken.NeedMore) Reset();
        return token;
    }

    private static XmppToken Parse(XmppStreamParser parser, in ReadOnlySequence<byte> window, out int consumed, out XmppElement? element, out string? error)
    {
        if (window.IsSingleSegment) return parser.Next(window.FirstSpan, out consumed, out element, out error);
        var rented = ArrayPool<byte>.Shared.Rent((int)window.Length);
        try
        {
            window.CopyTo(rented);
            return parser.Next(rented.AsSpan(0, (int)window.Length), out consumed, out element, out error);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Scans what <paramref name="buffer"/> holds beyond what earlier calls saw (the buffer starts where the last item
    /// ended). Returns the length of the front item once it is complete (or broken), else -1.
    /// </summary>
    private long Scan(in ReadOnlySequence<byte> buffer)
    {
        if (_scanned >= buffer.Length) return -1;
        var offset = _scanned;
        foreach (var memory in buffer.Slice(_scanned))
        {
            var span = memory.Span;
            for (var i = 0; i < span.Length; i++)
            {
                BytesExamined++;
                if (Step(span[i])) return _scanned = offset + i + 1;
            }
            offset += span.Length;
        }
        _scanned = offset;
        return -1;
    }

    /// <summary>A new stream, or the front item consumed: the next call starts afresh.</summary>
    public void Reset()
    {
        _scanned = 0;
        _depth = 0;
        _mode = Mode.Text;
        _previous = 0;
        _matched = 0;
        _markupSeen = false;
    }

    /// <summary>One byte; true when an item may end with it.</summary>
    private bool Step(byte b)
    {
        switch (_mode)
        {
            case Mode.Text:
                if (b == (byte)'<')
                {
                    _mode = Mode.Lt;
                    _markupSeen = true;
                    return false;
                }
                if (_depth == 0 && b is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n'))
                {
                    _markupSeen = true;
                    return true; // character data at stream level: the parser refuses it
                }
                return false;
            case Mode.Lt:
                switch (b)
                {
                    case (byte)'/':
                        _mode = Mode.EndTag;
                        return false;
                    case (byte)'!':
                        _mode = Mode.Bang;
                        _matched = 0;
                        return false;
                    case (byte)'>':
                        return true; // an empty tag: refused by the parser
                    case (byte)'?':
                        _mode = Mode.Refused; // a processing instruction: refused by the parser once it sees a '>'
                        return false;
                    default:
                        _mode = Mode.StartTag;
                        _previous = b;
                        return false;
                }
            case Mode.Bang:
                if (_depth > 0 && b == (byte)CData[_matched])
                {
                    if (++_matched == CData.Length)
                    {
                        _mode = Mode.CData;
                        _matched = 0;
                    }
                    return false;
                }
                _mode = Mode.Refused; // a comment or declaration: refused by the parser once it sees a '>'
                return b == (byte)'>';
            case Mode.Refused:
                return b == (byte)'>';
            case Mode.CData:
                if (b == (byte)'>' && _matched >= 2) _mode = Mode.Text;
                _matched = b == (byte)']' ? _matched + 1 : 0;
                return false;
            case Mode.Quote:
                if (b == _quote) _mode = Mode.StartTag;
                return false;
            case Mode.StartTag:
                if (b is (byte)'"' or (byte)'\'')
                {
                    _quote = b;
                    _mode = Mode.Quote;
                }
                else if (b == (byte)'>')
                {
                    _mode = Mode.Text;
                    if (_previous != (byte)'/') return ++_depth > XmppStreamParser.MaxDepth; // too deep: refused by the parser
                    if (_depth == 0) return true; // an empty top-level element
                }
                _previous = b;
                return false;
            default: // EndTag
                if (b != (byte)'>') return false;
                _mode = Mode.Text;
                return --_depth <= 0; // a top-level element closed, or </stream:stream>
        }
    }
}
