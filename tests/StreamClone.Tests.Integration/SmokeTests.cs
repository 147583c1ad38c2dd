namespace StreamClone.Tests.Integration;

public class SmokeTests { [Fact] public void Builds() => Assert.True(true); }
