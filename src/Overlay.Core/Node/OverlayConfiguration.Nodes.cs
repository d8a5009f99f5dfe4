using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Configuration;

namespace Overlay;

public static partial class OverlayConfiguration
{
    /// <summary>
    /// An object of the configuration with its key path, reading typed members with errors that name the key. The
    /// same reading code runs over a JSON document (<see cref="JsonNode"/>: typed values, keys matched exactly) and over
    /// any <see cref="IConfiguration"/> (<see cref="SectionNode"/>: every value is text, keys matched without case).
    /// </summary>
    private abstract class Node(string path)
    {
        protected string Path => path;

        public string Name => path[(path.LastIndexOf('.') + 1)..];

        public string KeyOf(string member) => path.Length == 0 ? member : $"{path}.{member}";

        /// <summary>The member's value, or null when it is absent or null.</summary>
        protected abstract Value? Get(string member);

        /// <summary>The object's keys; an error naming this object's key when it is not one.</summary>
        protected abstract IEnumerable<string> Keys();

        protected abstract StringComparison KeyComparison { get; }

        public void Only(params string[] allowed)
        {
            foreach (var key in Keys())
                if (!allowed.Any(a => string.Equals(a, key, KeyComparison)))
                    throw new OverlayConfigurationException(KeyOf(key), $"unknown key (known here: {string.Join(", ", allowed)})");
        }

        public Node? Child(string member) => Get(member) is { } v ? v.Object ?? throw Wrong(member, "an object") : null;

        /// <summary>Every member as an object of its own (an error naming it when it is not one is raised when it is read).</summary>
        public abstract IEnumerable<Node> Members();

        public IEnumerable<Node>? Array(string member) =>
            Get(member) is { } v ? v.Items ?? throw Wrong(member, "an array") : null;

        public string? String(string member) => Get(member) is { } v ? v.Text ?? throw Wrong(member, "a string") : null;

        public int? Int(string member)
        {
            if (Get(member) is not { } v) return null;
            // EdgeVPN wrote some numbers as strings ("Port": "5222"); accept both.
            if (v.Kind is ValueKind.Number or ValueKind.String or ValueKind.Text
                && int.TryParse(v.Scalar, v.Kind == ValueKind.Number ? NumberStyles.AllowLeadingSign : NumberStyles.None, CultureInfo.InvariantCulture, out var n))
                return n;
            throw new OverlayConfigurationException(KeyOf(member), $"must be an integer, not {v.Raw}");
        }

        public bool? Bool(string member)
        {
            if (Get(member) is not { } v) return null;
            if (v.Kind is ValueKind.Boolean or ValueKind.Text && bool.TryParse(v.Scalar, out var b)) return b;
            throw new OverlayConfigurationException(KeyOf(member), $"must be true or false, not {v.Raw}");
        }

        public TimeSpan? Seconds(string member)
        {
            if (Get(member) is not { } v) return null;
            if (v.Kind is ValueKind.Number or ValueKind.Text
                && double.TryParse(v.Scalar, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds is > 0 and <= 86_400)
                return TimeSpan.FromSeconds(seconds);
            throw new OverlayConfigurationException(KeyOf(member), $"must be a number of seconds in (0, 86400], not {v.Raw}");
        }

        public IReadOnlyList<string>? Strings(string member)
        {
            if (Get(member) is not { } v) return null;
            var items = v.Values ?? throw Wrong(member, "an array of strings");
            var list = new List<string>();
            for (var i = 0; i < items.Count; i++)
                list.Add(items[i].Text ?? throw new OverlayConfigurationException($"{KeyOf(member)}[{i}]", "must be a string"));
            return list;
        }

        private OverlayConfigurationException Wrong(string member, string what) => new(KeyOf(member), $"must be {what}");
    }

    /// <summary>What a value is, as far as its source tells: JSON types its values, configuration holds text only.</summary>
    private enum ValueKind { Object, Array, String, Number, Boolean, Text }

    /// <summary>
    /// One value: <see cref="Text"/> when it may be read as a string, <see cref="Scalar"/> when it may be parsed (a
    /// number, true or false, or configuration text), <see cref="Object"/>, <see cref="Items"/> and
    /// <see cref="Values"/> when it may be read as an object or an array (a configuration section may be either).
    /// </summary>
    private sealed record Value(ValueKind Kind, string? Text, string? Scalar, string Raw, Node? Object = null,
        IReadOnlyList<Node>? Items = null, IReadOnlyList<Value>? Values = null);

    private sealed class JsonNode(JsonElement element, string path) : Node(path)
    {
        protected override StringComparison KeyComparison => StringComparison.Ordinal;

        protected override IEnumerable<string> Keys() => Object().EnumerateObject().Select(p => p.Name).ToArray();

        public override IEnumerable<Node> Members() => Object().EnumerateObject().Select(p => new JsonNode(p.Value, KeyOf(p.Name))).ToArray();

        protected override Value? Get(string member) =>
            element.ValueKind == JsonValueKind.Object && element.TryGetProperty(member, out var value) ? Of(value, KeyOf(member)) : null;

        private JsonElement Object() => element.ValueKind == JsonValueKind.Object
            ? element
            : throw new OverlayConfigurationException(Path.Length == 0 ? "(root)" : Path, "must be an object");

        private static Value? Of(JsonElement value, string key) => value.ValueKind switch
        {
            JsonValueKind.Null or JsonValueKind.Undefined => null,
            JsonValueKind.Object => new Value(ValueKind.Object, null, null, value.GetRawText(), new JsonNode(value, key)),
            JsonValueKind.Array => new Value(ValueKind.Array, null, null, value.GetRawText(), null,
                [.. value.EnumerateArray().Select((item, i) => (Node)new JsonNode(item, $"{key}[{i}]"))],
                [.. value.EnumerateArray().Select((item, i) => Of(item, $"{key}[{i}]") ?? new Value(ValueKind.Object, null, null, "null"))]),
            JsonValueKind.String => new Value(ValueKind.String, value.GetString(), value.GetString(), value.GetRawText()),
            // A number or true/false parses as one, but is not a string: reading it as a string is an error.
            JsonValueKind.Number => new Value(ValueKind.Number, null, value.GetRawText(), value.GetRawText()),
            _ => new Value(ValueKind.Boolean, null, value.ValueKind == JsonValueKind.True ? "true" : "false", value.GetRawText()),
        };
    }

    private sealed class SectionNode(IConfiguration section, string path) : Node(path)
    {
        protected override StringComparison KeyComparison => StringComparison.OrdinalIgnoreCase;

        protected override IEnumerable<string> Keys() => Children().Select(c => c.Key).ToArray();

        public override IEnumerable<Node> Members() => Children().Select(c => new SectionNode(c, KeyOf(c.Key))).ToArray();

        private IConfigurationSection[] Children()
        {
            var children = section.GetChildren().ToArray();
            if (children.Length == 0 && section is IConfigurationSection { Value.Length: > 0 })
                throw new OverlayConfigurationException(Path.Length == 0 ? "(root)" : Path, "must be an object");
            return children;
        }

        protected override Value? Get(string member)
        {
            var child = section.GetSection(member);
            var children = child.GetChildren().ToArray();
            var key = KeyOf(member);
            if (children.Length == 0)
            {
                // Absent is null; present with no value (an environment variable set to nothing, JSON's {} and [] as
                // configuration keeps them) is an empty object or array.
                if (child.Value is null && !section.GetChildren().Any(c => string.Equals(c.Key, member, StringComparison.OrdinalIgnoreCase))) return null;
                if (string.IsNullOrEmpty(child.Value)) return new Value(ValueKind.Object, null, null, "(empty)", new SectionNode(child, key), [], []);
                return new Value(ValueKind.Text, child.Value, child.Value, $"\"{child.Value}\"");
            }
            // An array is a section whose keys are 0, 1, 2...: such a section may be read as either, any other only as an object.
            var indexes = children.Select(c => int.TryParse(c.Key, NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : -1).ToArray();
            var ordered = indexes.All(i => i >= 0) ? children.Zip(indexes).OrderBy(p => p.Second).Select(p => p.First).ToArray() : null;
            return new Value(ValueKind.Object, null, null, "(a section)", new SectionNode(child, key),
                ordered?.Select((c, i) => (Node)new SectionNode(c, $"{key}[{i}]")).ToArray(),
                ordered?.Select(c => c.GetChildren().Any() ? new Value(ValueKind.Object, null, null, "(a section)") : new Value(ValueKind.Text, c.Value ?? "", c.Value ?? "", $"\"{c.Value}\"")).ToArray());
        }
    }
}
