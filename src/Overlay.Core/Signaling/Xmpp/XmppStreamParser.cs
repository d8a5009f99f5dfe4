using System.Text;

namespace Overlay.Signaling.Xmpp;

/// <summary>What the parser found at the front of the buffer.</summary>
internal enum XmppToken
{
    /// <summary>The buffer holds no complete item yet.</summary>
    NeedMore,
    /// <summary>The opening <c>&lt;stream:stream&gt;</c> tag (its attributes in the element).</summary>
    StreamHeader,
    /// <summary>One complete top-level element (a stanza, features, SASL or TLS negotiation element, stream error).</summary>
    Element,
    /// <summary>The closing <c>&lt;/stream:stream&gt;</c>.</summary>
    StreamEnd,
    /// <summary>Malformed or prohibited input; the stream must be closed.</summary>
    Error,
}

/// <summary>
/// A minimal, hardened XML tokenizer for one XMPP stream (RFC 6120 §11). It accepts only what XMPP
/// allows: no DTD, no entity declarations or references beyond the five predefined ones and character
/// references, no comments or processing instructions after the XML declaration, bounded depth. It
/// never throws for malformed input: it returns <see cref="XmppToken.Error"/> with a reason. The caller
/// bounds the bytes it offers, so a stanza that does not complete within the limit is an error too.
/// </summary>
internal sealed class XmppStreamParser
{
    public const string StreamNamespace = "http://etherx.jabber.org/streams";
    internal const int MaxDepth = 32;
    private const int MaxAttributes = 64;

    private sealed record Scope(string? Prefix, string Namespace, Scope? Parent);

    private Scope? _streamScope;
    private bool _headerSeen;

    /// <summary>Bytes handed to <see cref="Next"/> since creation (for tests: each item should be offered once).</summary>
    internal long BytesOffered { get; private set; }

    /// <summary>True once the stream header was parsed.</summary>
    public bool HeaderSeen => _headerSeen;

    /// <summary>Reset for a restarted stream (after STARTTLS and after SASL success, RFC 6120 §5.4.3.3, §6.4.6).</summary>
    public void Reset()
    {
        _headerSeen = false;
        _streamScope = null;
    }

    /// <summary>Parses the next item from <paramref name="data"/>.</summary>
    public XmppToken Next(ReadOnlySpan<byte> data, out int consumed, out XmppElement? element, out string? error)
    {
        BytesOffered += data.Length;
        consumed = 0;
        element = null;
        error = null;
        var pos = 0;
        SkipWhitespace(data, ref pos);
        if (pos < data.Length && data[pos] != (byte)'<')
            return Fail(out error, _headerSeen ? "character data at stream level" : "expected the stream header");
        if (pos == data.Length || data[pos..].IndexOf((byte)'>') < 0)
        {
            consumed = pos; // whitespace keepalives are consumed; any complete item holds a '>'
            return XmppToken.NeedMore;
        }

        if (!_headerSeen)
        {
            if (StartsWith(data, pos, "<?xml"))
            {
                var end = IndexOf(data, pos, "?>");
                if (end < 0) return XmppToken.NeedMore;
                pos = end + 2;
                SkipWhitespace(data, ref pos);
                if (pos == data.Length) return XmppToken.NeedMore;
            }
            if (StartsWith(data, pos, "<!")) return Fail(out error, "document type declarations and markup declarations are prohibited (RFC 6120 §11.1)");
            if (data[pos] != (byte)'<') return Fail(out error, "expected the stream header");
            var root = new Scope("xml", "http://www.w3.org/XML/1998/namespace", null);
            var status = ParseStartTag(data, ref pos, root, out var header, out var scope, out var selfClosing, out _, out error);
            if (status != XmppToken.Element) return status;
            if (header!.Name != "stream" || header.Namespace != StreamNamespace || selfClosing)
                return Fail(out error, $"expected <stream:stream>, got <{header.Name}> in '{header.Namespace}'");
            _headerSeen = true;
            _streamScope = scope;
            consumed = pos;
            element = header;
            return XmppToken.StreamHeader;
        }

        if (StartsWith(data, pos, "</"))
        {
            var close = data[pos..].IndexOf((byte)'>');
            if (close < 0) return XmppToken.NeedMore;
            var name = Encoding.UTF8.GetString(data.Slice(pos + 2, close - 2)).Trim();
            if (!ResolveName(name, _streamScope!, out var local, out var ns) || local != "stream" || ns != StreamNamespace)
                return Fail(out error, $"unexpected closing tag </{name}> at stream level");
            consumed = pos + close + 1;
            return XmppToken.StreamEnd;
        }
        if (StartsWith(data, pos, "<?") || StartsWith(data, pos, "<!"))
            return Fail(out error, "comments, processing instructions and declarations are prohibited inside the stream (RFC 6120 §11.1)");
        if (data[pos] != (byte)'<') return Fail(out error, "character data at stream level");

        var result = ParseElement(data, ref pos, _streamScope!, 1, out element, out error);
        if (result == XmppToken.Element) consumed = pos;
        return result;
    }

    private static XmppToken Fail(out string? error, string reason)
    {
        error = reason;
        return XmppToken.Error;
    }

    private XmppToken ParseElement(ReadOnlySpan<byte> data, ref int pos, Scope parent, int depth, out XmppElement? element, out string? error)
    {
        element = null;
        if (depth > MaxDepth) return Fail(out error, $"elements nested deeper than {MaxDepth}");
        var status = ParseStartTag(data, ref pos, parent, out element, out var scope, out var selfClosing, out var qualifiedName, out error);
        if (status != XmppToken.Element || selfClosing) return status;
        StringBuilder? text = null;
        while (true)
        {
            if (pos >= data.Length) return XmppToken.NeedMore;
            if (data[pos] != (byte)'<')
            {
                var lt = data[pos..].IndexOf((byte)'<');
                if (lt < 0) return XmppToken.NeedMore;
                if (!Decode(data.Slice(pos, lt), out var chunk, out error)) return XmppToken.Error;
                (text ??= new StringBuilder()).Append(chunk);
                pos += lt;
                continue;
            }
            if (StartsWith(data, pos, "</"))
            {
                var close = data[pos..].IndexOf((byte)'>');
                if (close < 0) return XmppToken.NeedMore;
                var name = Encoding.UTF8.GetString(data.Slice(pos + 2, close - 2)).TrimEnd();
                if (name != qualifiedName) return Fail(out error, $"closing tag </{name}> does not match <{qualifiedName}>");
                pos += close + 1;
                if (text is not null) element!.Text = text.ToString();
                return XmppToken.Element;
            }
            if (StartsWith(data, pos, "<![CDATA["))
            {
                var end = IndexOf(data, pos, "]]>");
                if (end < 0) return XmppToken.NeedMore;
                var raw = data.Slice(pos + 9, end - pos - 9);
                if (raw.IndexOf((byte)'&') >= 0 || !Decode(raw, out var cdata, out error)) return error is null ? Fail(out error, "'&' in CDATA is not supported") : XmppToken.Error;
                (text ??= new StringBuilder()).Append(cdata);
                pos = end + 3;
                continue;
            }
            if (data[pos..].IndexOf((byte)'>') < 0) return XmppToken.NeedMore;
            if (data[pos + 1] is (byte)'!' or (byte)'?')
                return Fail(out error, "comments, processing instructions and declarations are prohibited (RFC 6120 §11.1)");
            var childStatus = ParseElement(data, ref pos, scope!, depth + 1, out var child, out error);
            if (childStatus != XmppToken.Element) return childStatus;
            element!.Children.Add(child!);
        }
    }

    /// <summary>Parses <c>&lt;name attr='v' ...&gt;</c> or <c>/&gt;</c>.</summary>
    private static XmppToken ParseStartTag(ReadOnlySpan<byte> data, ref int pos, Scope parent, out XmppElement? element,
        out Scope? scope, out bool selfClosing, out string qualifiedName, out string? error)
    {
        element = null;
        qualifiedName = "";
        scope = parent;
        selfClosing = false;
        error = null;
        var p = pos + 1;
        var nameStart = p;
        while (p < data.Length && !IsNameEnd(data[p])) p++;
        if (p >= data.Length) return XmppToken.NeedMore;
        if (p == nameStart) return Fail(out error, "empty element name");
        if (!IsValidName(data[nameStart..p])) return Fail(out error, "invalid element name");
        var qname = Encoding.UTF8.GetString(data[nameStart..p]);
        var attributes = new List<KeyValuePair<string, string>>();
        while (true)
        {
            SkipWhitespace(data, ref p);
            if (p >= data.Length) return XmppToken.NeedMore;
            if (data[p] == (byte)'>') { p++; break; }
            if (data[p] == (byte)'/')
            {
                if (p + 1 >= data.Length) return XmppToken.NeedMore;
                if (data[p + 1] != (byte)'>') return Fail(out error, "malformed empty-element tag");
                p += 2;
                selfClosing = true;
                break;
            }
            var an = p;
            while (p < data.Length && !IsNameEnd(data[p])) p++;
            if (p >= data.Length) return XmppToken.NeedMore;
            if (p == an || !IsValidName(data[an..p])) return Fail(out error, $"malformed attribute in <{qname}>");
            var attrName = Encoding.UTF8.GetString(data[an..p]);
            SkipWhitespace(data, ref p);
            if (p >= data.Length) return XmppToken.NeedMore;
            if (data[p] != (byte)'=') return Fail(out error, $"attribute {attrName} has no value");
            p++;
            SkipWhitespace(data, ref p);
            if (p >= data.Length) return XmppToken.NeedMore;
            var quote = data[p];
            if (quote is not ((byte)'"' or (byte)'\'')) return Fail(out error, $"attribute {attrName} value is not quoted");
            var close = data[(p + 1)..].IndexOf(quote);
            if (close < 0) return XmppToken.NeedMore;
            var raw = data.Slice(p + 1, close);
            if (raw.IndexOf((byte)'<') >= 0) return Fail(out error, "'<' in attribute value");
            if (!Decode(raw, out var value, out error)) return XmppToken.Error;
            p += close + 2;
            if (attributes.Count >= MaxAttributes) return Fail(out error, "too many attributes");
            foreach (var a in attributes)
            {
                if (a.Key == attrName) return Fail(out error, $"duplicate attribute {attrName}");
            }
            attributes.Add(new(attrName, value));
        }

        foreach (var a in attributes)
        {
            if (a.Key == "xmlns") scope = new Scope(null, a.Value, scope);
            else if (a.Key.StartsWith("xmlns:", StringComparison.Ordinal)) scope = new Scope(a.Key[6..], a.Value, scope);
        }
        if (!ResolveName(qname, scope!, out var local, out var ns)) return Fail(out error, $"undeclared namespace prefix in <{qname}>");
        element = new XmppElement(local, ns);
        foreach (var a in attributes)
        {
            if (a.Key != "xmlns" && !a.Key.StartsWith("xmlns:", StringComparison.Ordinal)) element.Attributes.Add(a);
        }
        qualifiedName = qname;
        pos = p;
        return XmppToken.Element;
    }

    private static bool ResolveName(string qname, Scope scope, out string local, out string ns)
    {
        var colon = qname.IndexOf(':', StringComparison.Ordinal);
        string? prefix = colon < 0 ? null : qname[..colon];
        local = colon < 0 ? qname : qname[(colon + 1)..];
        for (var s = scope; s is not null; s = s.Parent)
        {
            if (s.Prefix == prefix)
            {
                ns = s.Namespace;
                return true;
            }
        }
        ns = "";
        return prefix is null; // an element without a prefix and no default namespace is in no namespace
    }

    /// <summary>Valid UTF-8 without control characters or markup (a superset check of XML's Name production).</summary>
    private static bool IsValidName(ReadOnlySpan<byte> name)
    {
        if (!System.Text.Unicode.Utf8.IsValid(name)) return false;
        foreach (var b in name)
        {
            if (b < 0x20 || b is (byte)'&' or (byte)';' or (byte)'!' or (byte)'?') return false;
        }
        return name[0] is not ((byte)'-' or (byte)'.' or >= (byte)'0' and <= (byte)'9' or (byte)':');
    }

    private static bool IsNameEnd(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or (byte)'>' or (byte)'/' or (byte)'=' or (byte)'<' or (byte)'"' or (byte)'\'';

    private static void SkipWhitespace(ReadOnlySpan<byte> data, ref int pos)
    {
        while (pos < data.Length && data[pos] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') pos++;
    }

    private static bool StartsWith(ReadOnlySpan<byte> data, int pos, string ascii)
    {
        if (data.Length - pos < ascii.Length)
        {
            // A prefix of the marker is still "maybe": compare what is there.
            for (var i = 0; pos + i < data.Length; i++)
            {
                if (data[pos + i] != ascii[i]) return false;
            }
            return false;
        }
        for (var i = 0; i < ascii.Length; i++)
        {
            if (data[pos + i] != ascii[i]) return false;
        }
        return true;
    }

    private static int IndexOf(ReadOnlySpan<byte> data, int from, string ascii)
    {
        Span<byte> needle = stackalloc byte[ascii.Length];
        for (var i = 0; i < ascii.Length; i++) needle[i] = (byte)ascii[i];
        var i2 = data[from..].IndexOf(needle);
        return i2 < 0 ? -1 : from + i2;
    }

    /// <summary>Decodes UTF-8 text with the predefined entities and character references; anything else is an error.</summary>
    private static bool Decode(ReadOnlySpan<byte> raw, out string value, out string? error)
    {
        value = "";
        error = null;
        if (!System.Text.Unicode.Utf8.IsValid(raw))
        {
            error = "invalid UTF-8";
            return false;
        }
        foreach (var b in raw)
        {
            // XML 1.0 §2.2: no control characters other than tab, line feed and carriage return.
            if (b < 0x20 && b is not (0x09 or 0x0a or 0x0d))
            {
                error = $"control character 0x{b:x2} in character data";
                return false;
            }
        }
        var amp = raw.IndexOf((byte)'&');
        if (amp < 0)
        {
            value = Encoding.UTF8.GetString(raw);
            return true;
        }
        var sb = new StringBuilder(raw.Length);
        while (true)
        {
            sb.Append(Encoding.UTF8.GetString(raw[..amp]));
            raw = raw[amp..];
            var semi = raw.IndexOf((byte)';');
            if (semi < 0 || semi > 12)
            {
                error = "malformed entity reference";
                return false;
            }
            var name = Encoding.ASCII.GetString(raw[1..semi]);
            switch (name)
            {
                case "lt": sb.Append('<'); break;
                case "gt": sb.Append('>'); break;
                case "amp": sb.Append('&'); break;
                case "quot": sb.Append('"'); break;
                case "apos": sb.Append('\''); break;
                default:
                    if (name.Length > 1 && name[0] == '#')
                    {
                        var hex = name[1] == 'x';
                        if (int.TryParse(hex ? name.AsSpan(2) : name.AsSpan(1),
                                hex ? System.Globalization.NumberStyles.AllowHexSpecifier : System.Globalization.NumberStyles.None,
                                System.Globalization.CultureInfo.InvariantCulture, out var code)
                            && code is (0x9 or 0xA or 0xD) or (>= 0x20 and <= 0xD7FF) or (>= 0xE000 and <= 0x10FFFF) && code is not (>= 0xFFFE and <= 0xFFFF))
                        {
                            sb.Append(char.ConvertFromUtf32(code));
                            break;
                        }
                        error = $"invalid character reference &{name};";
                        return false;
                    }
                    error = $"undefined entity &{name}; (entity expansion is prohibited, RFC 6120 §11.1)";
                    return false;
            }
            raw = raw[(semi + 1)..];
            amp = raw.IndexOf((byte)'&');
            if (amp < 0)
            {
                sb.Append(Encoding.UTF8.GetString(raw));
                value = sb.ToString();
                return true;
            }
        }
    }
}
