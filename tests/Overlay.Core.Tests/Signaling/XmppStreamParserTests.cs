using System.Buffers;
using System.Text;
using NUnit.Framework;
using Overlay.Signaling.Xmpp;

namespace Overlay.Core.Tests.Signaling;

/// <summary>The hardened XML tokenizer: what XMPP allows parses, whatever RFC 6120 §11.1 prohibits fails cleanly.</summary>
public sealed class XmppStreamParserTests
{
    private const string Header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

    /// <summary>Feeds the stream in pieces, each kept as a segment of its own, and reads it as the connection does.</summary>
    private static List<(XmppToken Token, XmppElement? Element)> ParseAll(string xml, int chunk) => ParseAll(Encoding.UTF8.GetBytes(xml), chunk, out _, out _);

    private static List<(XmppToken Token, XmppElement? Element)> ParseAll(byte[] bytes, int chunk, out long scanned, out long parsed)
    {
        var parser = new XmppStreamParser();
        var scanner = new XmppItemScanner();
        var results = new List<(XmppToken, XmppElement?)>();
        var pieces = new List<byte[]>();
        try
        {
            for (var offset = 0; offset < bytes.Length; offset += chunk)
            {
                pieces.Add(bytes.AsSpan(offset, Math.Min(chunk, bytes.Length - offset)).ToArray());
                while (true)
                {
                    var token = scanner.Next(parser, Segments.Of(pieces), out var consumed, out var element, out var error);
                    Segments.Drop(pieces, consumed);
                    if (token == XmppToken.NeedMore) break;
                    results.Add((token, element));
                    if (token == XmppToken.Error)
                    {
                        results[^1] = (token, new XmppElement(error!, ""));
                        return results;
                    }
                }
            }
            return results;
        }
        finally
        {
            scanned = scanner.BytesExamined;
            parsed = parser.BytesOffered;
        }
    }

    private sealed class Segments : ReadOnlySequenceSegment<byte>
    {
        private Segments(byte[] bytes, long start)
        {
            Memory = bytes;
            RunningIndex = start;
        }

        public static ReadOnlySequence<byte> Of(List<byte[]> pieces)
        {
            if (pieces.Count == 0) return ReadOnlySequence<byte>.Empty;
            var first = new Segments(pieces[0], 0);
            var last = first;
            foreach (var piece in pieces.Skip(1))
            {
                var next = new Segments(piece, last.RunningIndex + last.Memory.Length);
                last.Next = next;
                last = next;
            }
            return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
        }

        public static void Drop(List<byte[]> pieces, int count)
        {
            while (count > 0)
            {
                if (count >= pieces[0].Length)
                {
                    count -= pieces[0].Length;
                    pieces.RemoveAt(0);
                }
                else
                {
                    pieces[0] = pieces[0][count..];
                    count = 0;
                }
            }
        }
    }

    [Test]
    public void A_large_stanza_that_arrives_in_pieces_is_looked_at_once_not_once_per_piece()
    {
        var body = new string('x', 1 << 20);
        var xml = Header + $"<message to='a@b'><body>{body}</body><x xmlns='urn:x' a='>'><![CDATA[<a>]]></x></message><presence/>";
        var bytes = Encoding.UTF8.GetBytes(xml);

        var items = ParseAll(bytes, 1024, out var scanned, out var parsed);

        Assert.That(items.Select(i => i.Token), Is.EqualTo(new[] { XmppToken.StreamHeader, XmppToken.Element, XmppToken.Element }));
        Assert.That(items[1].Element!.Child("body", "jabber:client")!.Text, Has.Length.EqualTo(body.Length));
        // Re-parsing from the stanza's start after each of its 1,025 pieces would look at about 550 MB.
        Assert.That(scanned, Is.LessThanOrEqualTo(bytes.Length), "each byte after the header is scanned once");
        Assert.That(parsed, Is.LessThanOrEqualTo(bytes.Length + 1024), "each stanza is parsed once, when complete");
    }

    [TestCase(1)]
    [TestCase(7)]
    [TestCase(4096)]
    public void A_stream_parses_the_same_whatever_the_split(int chunk)
    {
        var xml = Header + " \n<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features> "
            + "<message from='a@b/c' to=\"d@e\"><body>x &lt;&amp;&gt; &#x263A;&#65;</body><signal xmlns='urn:overlay:signal:1'>{\"v\":1}</signal></message>"
            + "<p:x xmlns:p='urn:p'><p:y/><![CDATA[<raw>]]></p:x></stream:stream>";

        var items = ParseAll(xml, chunk);

        Assert.That(items.Select(i => i.Token), Is.EqualTo(new[] { XmppToken.StreamHeader, XmppToken.Element, XmppToken.Element, XmppToken.Element, XmppToken.StreamEnd }));
        var features = items[1].Element!;
        Assert.That((features.Name, features.Namespace), Is.EqualTo(("features", XmppStreamParser.StreamNamespace)));
        Assert.That(features.Child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")!.Child("required", "urn:ietf:params:xml:ns:xmpp-tls"), Is.Not.Null);
        var message = items[2].Element!;
        Assert.That(message.Namespace, Is.EqualTo("jabber:client"));
        Assert.That(message.Attribute("to"), Is.EqualTo("d@e"));
        Assert.That(message.Child("body", "jabber:client")!.Text, Is.EqualTo("x <&> \u263AA"));
        Assert.That(message.Child("signal", "urn:overlay:signal:1")!.Text, Is.EqualTo("{\"v\":1}"));
        var prefixed = items[3].Element!;
        Assert.That((prefixed.Name, prefixed.Namespace, prefixed.Text), Is.EqualTo(("x", "urn:p", "<raw>")));
        Assert.That(prefixed.Children[0].Namespace, Is.EqualTo("urn:p"));
    }

    [TestCase("<!DOCTYPE x [<!ENTITY a 'b'>]>" , "document type", TestName = "A DTD before the header is refused (billion laughs, XXE)")]
    [TestCase(Header + "<a>&ext;</a>", "undefined entity", TestName = "An undefined entity reference is refused")]
    [TestCase(Header + "<a><!-- c --></a>", "prohibited", TestName = "A comment is refused")]
    [TestCase(Header + "<?pi x?>", "prohibited", TestName = "A processing instruction is refused")]
    [TestCase(Header + "<a></b>", "does not match", TestName = "A mismatched closing tag is refused")]
    [TestCase(Header + "<a x='1' x='2'/>", "duplicate attribute", TestName = "A duplicate attribute is refused")]
    [TestCase(Header + "<q:a/>", "undeclared namespace prefix", TestName = "An undeclared prefix is refused")]
    [TestCase(Header + "text", "character data at stream level", TestName = "Text at stream level is refused")]
    [TestCase(Header + "<a>&#0;</a>", "invalid character reference", TestName = "A NUL character reference is refused")]
    [TestCase("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>", "expected <stream:stream>", TestName = "A self-closed stream header is refused")]
    public void Prohibited_or_malformed_input_is_an_error_not_an_exception(string xml, string reason)
    {
        var items = ParseAll(xml, 3);
        Assert.That(items[^1].Token, Is.EqualTo(XmppToken.Error));
        Assert.That(items[^1].Element!.Name, Does.Contain(reason));
    }

    [Test]
    public void Nesting_deeper_than_the_limit_is_refused_not_a_stack_overflow()
    {
        var xml = Header + string.Concat(Enumerable.Repeat("<a>", 10_000));
        var items = ParseAll(xml, 100_000);
        Assert.That(items[^1].Token, Is.EqualTo(XmppToken.Error));
        Assert.That(items[^1].Element!.Name, Does.Contain("nested deeper"));
    }

    [Test]
    public void Invalid_utf8_is_refused()
    {
        var parser = new XmppStreamParser();
        var header = Encoding.UTF8.GetBytes(Header);
        Assert.That(parser.Next(header, out var consumed, out _, out _), Is.EqualTo(XmppToken.StreamHeader));
        Assert.That(consumed, Is.EqualTo(header.Length));
        byte[] bad = [.. "<a>"u8, 0xc3, 0x28, .. "</a>"u8];
        Assert.That(parser.Next(bad, out _, out _, out var error), Is.EqualTo(XmppToken.Error));
        Assert.That(error, Does.Contain("UTF-8"));
    }

    [Test]
    public void Serialised_elements_escape_text_and_attributes_and_parse_back()
    {
        var e = new XmppElement("message", "jabber:client").SetAttribute("to", "a'b\"<c>&")
            .Add(new XmppElement("signal", "urn:overlay:signal:1").WithText("{\"x\":\"<&>'\"}"));
        var items = ParseAll(Header + e.ToXml(), 5);
        var back = items[1].Element!;
        Assert.That(back.Attribute("to"), Is.EqualTo("a'b\"<c>&"));
        Assert.That(back.Child("signal", "urn:overlay:signal:1")!.Text, Is.EqualTo("{\"x\":\"<&>'\"}"));
    }
}
