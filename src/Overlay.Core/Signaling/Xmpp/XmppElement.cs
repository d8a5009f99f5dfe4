using System.Text;

namespace Overlay.Signaling.Xmpp;

/// <summary>
/// One parsed XML element of an XMPP stream (a stanza or part of one): local name, resolved namespace,
/// attributes, children and text. Small by construction: the parser bounds a stanza's size and depth.
/// </summary>
internal sealed class XmppElement
{
    public XmppElement(string name, string ns)
    {
        Name = name;
        Namespace = ns;
    }

    public string Name { get; }

    public string Namespace { get; }

    /// <summary>Attributes by qualified name as written (e.g. <c>to</c>, <c>xml:lang</c>); namespace declarations excluded.</summary>
    public List<KeyValuePair<string, string>> Attributes { get; } = [];

    public List<XmppElement> Children { get; } = [];

    public string Text { get; set; } = "";

    public string? Attribute(string name)
    {
        foreach (var a in Attributes)
        {
            if (a.Key == name) return a.Value;
        }
        return null;
    }

    public XmppElement? Child(string name, string ns)
    {
        foreach (var c in Children)
        {
            if (c.Name == name && c.Namespace == ns) return c;
        }
        return null;
    }

    public XmppElement? FirstChild(string ns)
    {
        foreach (var c in Children)
        {
            if (c.Namespace == ns) return c;
        }
        return null;
    }

    public XmppElement SetAttribute(string name, string? value)
    {
        if (value is not null) Attributes.Add(new(name, value));
        return this;
    }

    public XmppElement Add(XmppElement child)
    {
        Children.Add(child);
        return this;
    }

    public XmppElement WithText(string text)
    {
        Text = text;
        return this;
    }

    /// <summary>Serialises with namespace declarations only where the namespace changes from the parent's.</summary>
    public string ToXml(string parentNamespace = "jabber:client")
    {
        var sb = new StringBuilder(128);
        Write(sb, parentNamespace);
        return sb.ToString();
    }

    private void Write(StringBuilder sb, string parentNamespace)
    {
        sb.Append('<').Append(Name);
        if (Namespace != parentNamespace) sb.Append(" xmlns='").Append(Escape(Namespace)).Append('\'');
        foreach (var a in Attributes) sb.Append(' ').Append(a.Key).Append("='").Append(Escape(a.Value)).Append('\'');
        if (Children.Count == 0 && Text.Length == 0)
        {
            sb.Append("/>");
            return;
        }
        sb.Append('>');
        sb.Append(Escape(Text));
        foreach (var c in Children) c.Write(sb, Namespace);
        sb.Append("</").Append(Name).Append('>');
    }

    public static string Escape(string s)
    {
        if (s.AsSpan().IndexOfAny("<>&'\"") < 0) return s;
        var sb = new StringBuilder(s.Length + 16);
        foreach (var c in s)
        {
            switch (c)
            {
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '&': sb.Append("&amp;"); break;
                case '\'': sb.Append("&apos;"); break;
                case '"': sb.Append("&quot;"); break;
                default: sb.Append(c); break;
            }
        }
        return sb.ToString();
    }

    public override string ToString() => ToXml("");
}
