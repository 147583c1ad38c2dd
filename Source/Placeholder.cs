namespace StreamClone.Source; internal static class Placeholder { }
