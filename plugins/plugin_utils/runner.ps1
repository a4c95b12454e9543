# hybridmail.exchange runner - the only code the collection runs on an Exchange server.
#
# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The controller sends ONE script: a first line that assigns $HybridmailRequest (base64 of a UTF-8
# JSON request), then this file unchanged. The contract is docs/wire-contract.md. In order:
#   1. decode and check the request (version, allow-listed cmdlets, read-only refusal);
#   2. load the Exchange cmdlets once, and only if a call needs one (session.load);
#   3. run the calls in order, each with its parameters splatted and -ErrorAction Stop;
#   4. convert the requested properties to plain JSON values and print ONE line
#      HYBRIDMAIL-RESULT:<base64 of UTF-8 JSON>, then exit 0.
# The request is data, never code: no Invoke-Expression, no command built from strings. The only
# commands a request can run are those in $AllowedCmdlets, and a read-only request naming any
# command that does not start with Get- is refused whole.

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$HybridmailWireVersion = 1
$HybridmailResultPrefix = 'HYBRIDMAIL-RESULT:'

# Everything a request may call: Exchange cmdlets, Windows cmdlets, and the helpers defined below.
# Mirrors ALLOWED_CMDLETS in plugins/plugin_utils/_runner.py (a unit test keeps them equal).
$AllowedCmdlets = @(
    'Get-ExchangeServer',
    'Get-ExchangeCertificate',
    'Get-TransportService',
    'Get-SendConnector',
    'Get-ReceiveConnector',
    'Get-HybridConfiguration',
    'Get-Queue',
    'Get-ManagementRole',
    'Get-ManagementRoleAssignment',
    'Enable-ExchangeCertificate',
    'Remove-ExchangeCertificate',
    'Set-SendConnector',
    'Set-ReceiveConnector',
    'Import-ExchangeCertificate',
    'Set-HybridConfiguration',
    'Get-WinEvent',
    'Get-HybridmailHost',
    'Get-HybridmailCertificateChain',
    'Get-HybridmailTlsState'
)
# The allowed commands that need no Exchange session; all others need the Exchange cmdlets loaded.
$SessionFreeCmdlets = @(
    'Get-WinEvent',
    'Get-HybridmailHost',
    'Get-HybridmailCertificateChain',
    'Get-HybridmailTlsState'
)
$SessionLoads = @('auto', 'none', 'snapin', 'e2010', 'remote_exchange')


# ------------------------------------------------------------------------------------------------
# Helpers a request may call. Read-only, named like cmdlets, listed in $AllowedCmdlets.
# ------------------------------------------------------------------------------------------------

function Get-HybridmailHost {
    # One object describing this host.
    [CmdletBinding()]
    param()
    $ipProperties = [System.Net.NetworkInformation.IPGlobalProperties]::GetIPGlobalProperties()
    $fqdn = $ipProperties.HostName
    if ($ipProperties.DomainName) {
        $fqdn = $ipProperties.HostName + '.' + $ipProperties.DomainName
    }
    [pscustomobject]@{
        ComputerName      = $env:COMPUTERNAME
        Fqdn              = $fqdn
        Domain            = $ipProperties.DomainName
        PowerShellVersion = $PSVersionTable.PSVersion.ToString()
        OSVersion         = [System.Environment]::OSVersion.Version.ToString()
        Culture           = [System.Globalization.CultureInfo]::CurrentCulture.Name
    }
}

function Get-HybridmailCertificateChain {
    # One object per certificate in Cert:\LocalMachine\My: the chain Windows builds for it from the
    # local certificate stores, leaf first. Revocation is not checked; nothing is downloaded.
    [CmdletBinding()]
    param()
    foreach ($certificate in @(Get-ChildItem -Path 'Cert:\LocalMachine\My')) {
        $chain = New-Object -TypeName System.Security.Cryptography.X509Certificates.X509Chain -ArgumentList $true
        $chain.ChainPolicy.RevocationMode = [System.Security.Cryptography.X509Certificates.X509RevocationMode]::NoCheck
        $chain.ChainPolicy.UrlRetrievalTimeout = [System.TimeSpan]::FromMilliseconds(1)
        if ($null -ne $chain.ChainPolicy.PSObject.Properties['DisableCertificateDownloads']) {
            $chain.ChainPolicy.DisableCertificateDownloads = $true
        }
        $null = $chain.Build($certificate)

        $thumbprints = New-Object -TypeName 'System.Collections.Generic.List[string]'
        $rawData = New-Object -TypeName 'System.Collections.Generic.List[string]'
        foreach ($element in $chain.ChainElements) {
            $thumbprints.Add($element.Certificate.Thumbprint)
            $rawData.Add([System.Convert]::ToBase64String($element.Certificate.RawData))
        }
        $status = New-Object -TypeName 'System.Collections.Generic.List[string]'
        foreach ($chainStatus in $chain.ChainStatus) {
            foreach ($flag in ($chainStatus.Status.ToString() -split ', ')) {
                if (-not $status.Contains($flag)) {
                    $status.Add($flag)
                }
            }
        }
        $chain.Reset()

        [pscustomobject]@{
            Thumbprint       = $certificate.Thumbprint
            ChainThumbprints = $thumbprints.ToArray()
            ChainRawData     = $rawData.ToArray()
            ChainStatus      = $status.ToArray()
        }
    }
}

function Get-HybridmailTlsState {
    # One object: the SCHANNEL TLS 1.2 registry values and .NET 4 strong crypto, each a bool, or
    # null when the value is absent (Windows then uses its default).
    [CmdletBinding()]
    param()
    $tls12 = 'HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL\Protocols\TLS 1.2'
    $net4 = 'HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\.NETFramework\v4.0.30319'
    [pscustomobject]@{
        Tls12ClientEnabled           = Read-HybridmailRegistryFlag -Key ($tls12 + '\Client') -Name 'Enabled'
        Tls12ClientDisabledByDefault = Read-HybridmailRegistryFlag -Key ($tls12 + '\Client') -Name 'DisabledByDefault'
        Tls12ServerEnabled           = Read-HybridmailRegistryFlag -Key ($tls12 + '\Server') -Name 'Enabled'
        Tls12ServerDisabledByDefault = Read-HybridmailRegistryFlag -Key ($tls12 + '\Server') -Name 'DisabledByDefault'
        StrongCryptoNet4             = Read-HybridmailRegistryFlag -Key $net4 -Name 'SchUseStrongCrypto'
    }
}

function Read-HybridmailRegistryFlag {
    # A registry value as a bool (non-zero is true), or $null when the key or the value is absent.
    param([string]$Key, [string]$Name)
    $value = [Microsoft.Win32.Registry]::GetValue($Key, $Name, $null)
    if ($null -eq $value) {
        return $null
    }
    return ([long]$value -ne 0)
}


# ------------------------------------------------------------------------------------------------
# The request
# ------------------------------------------------------------------------------------------------

function ConvertFrom-HybridmailJson {
    # ConvertFrom-Json output -> plain data: every JSON object becomes a hashtable (Windows
    # PowerShell 5.1 has no -AsHashtable), every JSON array an object[].
    param($Node)
    if ($Node -is [System.Management.Automation.PSCustomObject]) {
        $table = @{}
        foreach ($property in $Node.PSObject.Properties) {
            $table[$property.Name] = ConvertFrom-HybridmailJson -Node $property.Value
        }
        return $table
    }
    if ($Node -is [System.Array]) {
        $items = New-Object -TypeName 'System.Collections.Generic.List[object]'
        foreach ($item in $Node) {
            $items.Add((ConvertFrom-HybridmailJson -Node $item))
        }
        return ,$items.ToArray()
    }
    return $Node
}

function Test-HybridmailInteger {
    param($Value)
    return ($Value -is [int] -or $Value -is [long])
}

function Read-HybridmailRequest {
    # Decode and check the shape of the request. Returns the request as hashtables; throws a
    # message for anything malformed (the runner answers BadRequest).
    param([string]$Encoded)
    $json = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($Encoded))
    $request = ConvertFrom-HybridmailJson -Node (ConvertFrom-Json -InputObject $json)
    if (-not ($request -is [hashtable])) {
        throw 'the request is not a JSON object'
    }
    $version = $request['version']
    if (-not (Test-HybridmailInteger -Value $version) -or $version -ne $HybridmailWireVersion) {
        throw ('unsupported request version ' + [string]$version + ', this runner speaks ' + $HybridmailWireVersion)
    }
    if (-not ($request['read_only'] -is [bool])) {
        throw 'read_only must be true or false'
    }
    $load = 'auto'
    if ($null -ne $request['session']) {
        if (-not ($request['session'] -is [hashtable])) {
            throw 'session must be an object'
        }
        if ($null -ne $request['session']['load']) {
            $load = $request['session']['load']
        }
    }
    if (-not ($load -is [string]) -or $SessionLoads -cnotcontains $load) {
        throw ('unknown session.load ' + [string]$load)
    }
    $request['load'] = $load

    if (-not ($request['calls'] -is [System.Array])) {
        throw 'calls must be a list'
    }
    $ids = @{}
    foreach ($call in $request['calls']) {
        if (-not ($call -is [hashtable])) {
            throw 'every call must be an object'
        }
        $id = $call['id']
        if (-not ($id -is [string]) -or $id.Length -eq 0) {
            throw 'every call needs a non-empty string id'
        }
        if ($ids.ContainsKey($id)) {
            throw ('duplicate call id ' + $id)
        }
        $ids[$id] = $true
        if (-not ($call['cmdlet'] -is [string])) {
            throw ('call ' + $id + ': cmdlet must be a string')
        }
        if ($null -eq $call['parameters']) {
            $call['parameters'] = @{}
        }
        if (-not ($call['parameters'] -is [hashtable])) {
            throw ('call ' + $id + ': parameters must be an object')
        }
        foreach ($key in $call['parameters'].Keys) {
            # no -OutVariable, -ErrorVariable, -PipelineVariable ...: a request cannot set variables
            if ($key -like '*Variable' -or $key -eq 'OutBuffer') {
                throw ('call ' + $id + ': parameter ' + $key + ' is not allowed')
            }
        }
        if ($null -eq $call['properties']) {
            $call['properties'] = @()
        }
        if (-not ($call['properties'] -is [System.Array])) {
            throw ('call ' + $id + ': properties must be a list')
        }
        foreach ($name in $call['properties']) {
            if (-not ($name -is [string])) {
                throw ('call ' + $id + ': property names must be strings')
            }
        }
        $call['mutation'] = -not $call['cmdlet'].StartsWith('Get-', [System.StringComparison]::Ordinal)
        if ($null -ne $call['expect']) {
            if ($call['mutation']) {
                throw ('call ' + $id + ': expect is only allowed on Get- calls')
            }
            if (-not ($call['expect'] -is [System.Array])) {
                throw ('call ' + $id + ': expect must be a list')
            }
            foreach ($row in $call['expect']) {
                if (-not ($row -is [hashtable])) {
                    throw ('call ' + $id + ': every expect row must be an object')
                }
            }
        }
    }
    return $request
}

function Test-HybridmailRefusal {
    # Why the request must not run at all (the runner answers RequestRefused), or $null.
    param($Request)
    foreach ($call in $Request['calls']) {
        if ($AllowedCmdlets -cnotcontains $call['cmdlet']) {
            return ('call ' + $call['id'] + ': ' + $call['cmdlet'] + ' is not allowed')
        }
        if ($Request['read_only'] -and $call['mutation']) {
            return ('call ' + $call['id'] + ': ' + $call['cmdlet'] + ' is not allowed in a read-only request')
        }
    }
    return $null
}

function ConvertTo-HybridmailArgument {
    # A request parameter value -> the value splatted. Typed values first:
    #   {"__hybridmail": "computername"}           -> $env:COMPUTERNAME
    #   {"__hybridmail": "days_ago", "value": N}    -> (Get-Date).AddDays(-N)
    #   {"__hybridmail": "bytes", "value": B64}     -> [byte[]] (Import-ExchangeCertificate -FileData)
    #   {"__hybridmail": "secure_string", "value": T} -> SecureString built here (-Password); T never leaves
    # any other object -> hashtable, array -> object[], scalars as they are.
    param($Value)
    if ($Value -is [hashtable]) {
        if ($Value.ContainsKey('__hybridmail')) {
            $kind = $Value['__hybridmail']
            if ($kind -ceq 'computername') {
                return $env:COMPUTERNAME
            }
            if ($kind -ceq 'days_ago') {
                $days = $Value['value']
                if (-not (Test-HybridmailInteger -Value $days)) {
                    throw 'days_ago needs an integer value'
                }
                return (Get-Date).AddDays(-$days)
            }
            if ($kind -ceq 'bytes') {
                return ,[System.Convert]::FromBase64String([string]$Value['value'])
            }
            if ($kind -ceq 'secure_string') {
                $secure = New-Object -TypeName 'System.Security.SecureString'
                foreach ($character in ([string]$Value['value']).ToCharArray()) {
                    $secure.AppendChar($character)
                }
                $secure.MakeReadOnly()
                return $secure
            }
            throw ('unknown typed value ' + [string]$kind)
        }
        $table = @{}
        foreach ($key in $Value.Keys) {
            $table[$key] = ConvertTo-HybridmailArgument -Value $Value[$key]
        }
        return $table
    }
    if ($Value -is [System.Array]) {
        $items = New-Object -TypeName 'System.Collections.Generic.List[object]'
        foreach ($item in $Value) {
            $items.Add((ConvertTo-HybridmailArgument -Value $item))
        }
        return ,$items.ToArray()
    }
    return $Value
}


# ------------------------------------------------------------------------------------------------
# Loading the Exchange cmdlets
# ------------------------------------------------------------------------------------------------

function Test-HybridmailExchangeLoaded {
    return ($null -ne (Get-Command -Name 'Get-ExchangeCertificate' -ErrorAction Ignore))
}

function Add-HybridmailSnapin {
    # Add Exchange snap-ins by name (those already added are skipped); throws when one is missing.
    param([string[]]$Name)
    foreach ($snapin in $Name) {
        if ($null -eq (Get-PSSnapin -Name $snapin -ErrorAction Ignore)) {
            Add-PSSnapin -Name $snapin -ErrorAction Stop
        }
    }
}

function Read-HybridmailEdgeSnapin {
    # The Exchange snap-ins listed in bin\exShell.psc1 (how the Edge Transport shell loads them).
    param([string]$InstallPath)
    $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
    $consoleFile = Join-Path -Path $InstallPath -ChildPath 'bin\exShell.psc1'
    if (Test-Path -LiteralPath $consoleFile -PathType Leaf) {
        $document = New-Object -TypeName System.Xml.XmlDocument
        $document.XmlResolver = $null
        $document.Load($consoleFile)
        foreach ($node in $document.SelectNodes('//PSSnapIn')) {
            $snapin = $node.GetAttribute('Name')
            if ($snapin -like 'Microsoft.Exchange.*') {
                $names.Add($snapin)
            }
        }
    }
    return ,$names.ToArray()
}

function Import-HybridmailExchange {
    # Make the Exchange cmdlets available as session.load says. Returns how: 'present' (already
    # there), 'snapin', 'e2010', 'edge' or 'remote_exchange'; throws with everything it tried.
    # auto tries: present -> snapin -> e2010 -> edge (exShell.psc1) -> remote_exchange.
    # The caller dot-sources this function (". Import-HybridmailExchange") so that what
    # RemoteExchange.ps1 defines and imports stays in the runner's scope after the function ends.
    param([string]$LoadMode)
    if ($LoadMode -ceq 'auto' -and (Test-HybridmailExchangeLoaded)) {
        return 'present'
    }
    $loadSteps = @($LoadMode)
    if ($LoadMode -ceq 'auto') {
        $loadSteps = @('snapin', 'e2010', 'edge', 'remote_exchange')
    }
    $loadInstallPath = [System.Environment]::GetEnvironmentVariable('ExchangeInstallPath')
    $loadProblems = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($loadStep in $loadSteps) {
        try {
            if ($loadStep -ceq 'snapin') {
                Add-HybridmailSnapin -Name 'Microsoft.Exchange.Management.PowerShell.SnapIn'
            }
            elseif ($loadStep -ceq 'e2010') {
                Add-HybridmailSnapin -Name 'Microsoft.Exchange.Management.PowerShell.E2010'
            }
            elseif (-not $loadInstallPath) {
                # edge and remote_exchange need the Exchange install path
                throw 'ExchangeInstallPath is not set'
            }
            elseif ($loadStep -ceq 'edge') {
                $edgeSnapins = Read-HybridmailEdgeSnapin -InstallPath $loadInstallPath
                if (@($edgeSnapins).Count -eq 0) {
                    throw 'no Exchange snap-in listed in bin\exShell.psc1'
                }
                Add-HybridmailSnapin -Name $edgeSnapins
            }
            else {
                # remote_exchange: Exchange's supported way (a second hop to an Exchange server).
                # Exchange's own scripts are not written for strict mode or 'Stop'; what they
                # print is not ours to return.
                $remoteExchangeScript = Join-Path -Path $loadInstallPath -ChildPath 'bin\RemoteExchange.ps1'
                Set-StrictMode -Off
                $ErrorActionPreference = 'SilentlyContinue'
                $Error.Clear()
                try {
                    $null = . $remoteExchangeScript
                    $null = Connect-ExchangeServer -auto -ClientApplication:ManagementShell
                }
                finally {
                    $ErrorActionPreference = 'Stop'
                    Set-StrictMode -Version 2
                }
                if ($Error.Count -gt 0 -and -not (Test-HybridmailExchangeLoaded)) {
                    throw ([string]$Error[0])
                }
            }
            if (Test-HybridmailExchangeLoaded) {
                return $loadStep
            }
            $loadProblems.Add($loadStep + ': the Exchange cmdlets are still missing')
        }
        catch {
            $loadProblems.Add($loadStep + ': ' + $_.Exception.Message)
        }
    }
    throw ('cannot load the Exchange cmdlets (' + ($loadProblems -join '; ') + ')')
}


# ------------------------------------------------------------------------------------------------
# Values: the one converter of the wire contract, and the canonical strings guards compare
# ------------------------------------------------------------------------------------------------

function ConvertTo-HybridmailValue {
    # Any value -> null, string, bool, number, or an array of those:
    #   enum -> name ('IMAP, POP, IIS, SMTP'; 'None'), also for enums from a remote session
    #   DateTime/DateTimeOffset -> 'yyyy-MM-ddTHH:mm:ssZ' (UTC)   byte[] -> base64
    #   other enumerables (not strings or dictionaries) -> arrays   anything else -> its string
    param($Value, [int]$Depth = 0)
    if ($null -eq $Value) {
        return $null
    }
    if ($Value -is [System.Enum] -or $Value.PSObject.TypeNames -contains 'Deserialized.System.Enum') {
        return [string]$Value
    }
    $base = $Value.PSObject.BaseObject
    if ($base -is [string] -or $base -is [bool]) {
        return $base
    }
    if ($base -is [int] -or $base -is [long] -or $base -is [double] -or $base -is [decimal] -or
        $base -is [single] -or $base -is [byte] -or $base -is [sbyte] -or $base -is [int16] -or
        $base -is [uint16] -or $base -is [uint32] -or $base -is [uint64]) {
        return $base
    }
    if ($base -is [System.DateTime]) {
        return $base.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [System.Globalization.CultureInfo]::InvariantCulture)
    }
    if ($base -is [System.DateTimeOffset]) {
        return $base.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [System.Globalization.CultureInfo]::InvariantCulture)
    }
    if ($base -is [byte[]]) {
        return [System.Convert]::ToBase64String($base)
    }
    if ($Depth -lt 4 -and $base -is [System.Collections.IEnumerable] -and -not ($base -is [System.Collections.IDictionary])) {
        $items = New-Object -TypeName 'System.Collections.Generic.List[object]'
        foreach ($item in $base) {
            $items.Add((ConvertTo-HybridmailValue -Value $item -Depth ($Depth + 1)))
        }
        return ,$items.ToArray()
    }
    return [string]$Value
}

function ConvertTo-HybridmailCanonical {
    # The canonical string of a converted value: null -> '', bool -> 'true'/'false', number ->
    # invariant digits, string -> itself, array -> its items' canonical strings joined by LF.
    param($Value)
    if ($null -eq $Value) {
        return ''
    }
    if ($Value -is [bool]) {
        if ($Value) {
            return 'true'
        }
        return 'false'
    }
    if ($Value -is [string]) {
        return $Value
    }
    if ($Value -is [System.Array]) {
        $parts = New-Object -TypeName 'System.Collections.Generic.List[string]'
        foreach ($item in $Value) {
            $parts.Add((ConvertTo-HybridmailCanonical -Value $item))
        }
        return [string]::Join("`n", $parts.ToArray())
    }
    return [System.Convert]::ToString($Value, [System.Globalization.CultureInfo]::InvariantCulture)
}

function Read-HybridmailProperty {
    # One property of an output object, or $null when the object has no such property (or the
    # property cannot be read).
    param($InputObject, [string]$Name)
    $property = $InputObject.PSObject.Properties[$Name]
    if ($null -eq $property) {
        return $null
    }
    try {
        $value = $property.Value
    }
    catch {
        return $null
    }
    return ,$value
}

function Format-HybridmailRow {
    # A canonical row: the canonical strings of the named properties joined by U+001F.
    param([string[]]$Names, $Lookup)
    $cells = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($name in $Names) {
        if ($Lookup -is [hashtable]) {
            $value = ConvertTo-HybridmailValue -Value $Lookup[$name]
        }
        else {
            $value = ConvertTo-HybridmailValue -Value (Read-HybridmailProperty -InputObject $Lookup -Name $name)
        }
        $cells.Add((ConvertTo-HybridmailCanonical -Value $value))
    }
    return [string]::Join([string][char]31, $cells.ToArray())
}

function Test-HybridmailGuard {
    # Whether the objects a call returned match its expect rows, as multisets of canonical rows
    # over the property names the expect rows use (_runner.canonical_rows).
    param([object[]]$Objects, [object[]]$Expect)
    $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($row in $Expect) {
        foreach ($key in $row.Keys) {
            if (-not $names.Contains([string]$key)) {
                $names.Add([string]$key)
            }
        }
    }
    $nameArray = $names.ToArray()
    $actual = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($item in $Objects) {
        $actual.Add((Format-HybridmailRow -Names $nameArray -Lookup $item))
    }
    $expected = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($row in $Expect) {
        $expected.Add((Format-HybridmailRow -Names $nameArray -Lookup $row))
    }
    if ($actual.Count -ne $expected.Count) {
        return $false
    }
    $actual.Sort([System.StringComparer]::Ordinal)
    $expected.Sort([System.StringComparer]::Ordinal)
    for ($index = 0; $index -lt $actual.Count; $index++) {
        if (-not [string]::Equals($actual[$index], $expected[$index], [System.StringComparison]::Ordinal)) {
            return $false
        }
    }
    return $true
}


# ------------------------------------------------------------------------------------------------
# Running calls
# ------------------------------------------------------------------------------------------------

function ConvertTo-HybridmailError {
    # An ErrorRecord -> {type, category, message, fqid}. An error from a remote Exchange session
    # names the server-side exception type rather than RemoteException.
    param($ErrorRecord)
    $exception = $ErrorRecord.Exception
    $type = $exception.GetType().FullName
    if ($exception -is [System.Management.Automation.RemoteException] -and $null -ne $exception.SerializedRemoteException) {
        $type = $exception.SerializedRemoteException.PSObject.TypeNames[0] -replace '^Deserialized\.', ''
    }
    return [ordered]@{
        type     = $type
        category = $ErrorRecord.CategoryInfo.Category.ToString()
        message  = $exception.Message
        fqid     = $ErrorRecord.FullyQualifiedErrorId
    }
}

function Invoke-HybridmailCall {
    # Run one call; returns its result: {id, ok: true, objects[, guard_failed]} or
    # {id, ok: false, error}.
    param($Call)
    $result = [ordered]@{ id = $Call['id']; ok = $true }
    $cmdletName = $Call['cmdlet']
    if ($AllowedCmdlets -cnotcontains $cmdletName) {
        throw ($cmdletName + ' is not allowed')
    }
    $splat = $Call['arguments']
    $splat['ErrorAction'] = 'Stop'
    try {
        $output = @(& $cmdletName @splat)
    }
    catch {
        $result['ok'] = $false
        $result['error'] = ConvertTo-HybridmailError -ErrorRecord $_
        return $result
    }
    $items = New-Object -TypeName 'System.Collections.Generic.List[object]'
    foreach ($item in $output) {
        if ($null -ne $item) {
            $items.Add($item)
        }
    }

    $objects = New-Object -TypeName 'System.Collections.Generic.List[object]'
    if ($Call['properties'].Length -gt 0) {
        foreach ($item in $items) {
            $row = [ordered]@{}
            foreach ($name in $Call['properties']) {
                $row[$name] = ConvertTo-HybridmailValue -Value (Read-HybridmailProperty -InputObject $item -Name $name)
            }
            $objects.Add($row)
        }
    }
    $result['objects'] = $objects.ToArray()
    if ($null -ne $Call['expect']) {
        if (-not (Test-HybridmailGuard -Objects $items.ToArray() -Expect $Call['expect'])) {
            $result['guard_failed'] = $true
        }
    }
    return $result
}

function New-HybridmailFailure {
    param([string]$Type, [string]$Message)
    return [ordered]@{ type = $Type; message = $Message }
}


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------

$HybridmailClock = [System.Diagnostics.Stopwatch]::StartNew()
$HybridmailRunnerInfo = [ordered]@{
    powershell = $PSVersionTable.PSVersion.ToString()
    load       = 'none'
    elapsed_ms = 0
}
$HybridmailFailure = $null
$HybridmailResults = New-Object -TypeName 'System.Collections.Generic.List[object]'

try {
    # 1. The request: shape, refusal, typed parameter values.
    $HybridmailPlan = $null
    try {
        $HybridmailPlan = Read-HybridmailRequest -Encoded $HybridmailRequest
    }
    catch {
        $HybridmailFailure = New-HybridmailFailure -Type 'BadRequest' -Message $_.Exception.Message
    }
    if ($null -eq $HybridmailFailure) {
        $HybridmailRefusal = Test-HybridmailRefusal -Request $HybridmailPlan
        if ($null -ne $HybridmailRefusal) {
            $HybridmailFailure = New-HybridmailFailure -Type 'RequestRefused' -Message $HybridmailRefusal
        }
    }
    if ($null -eq $HybridmailFailure) {
        try {
            foreach ($HybridmailCall in $HybridmailPlan['calls']) {
                $HybridmailArguments = @{}
                foreach ($HybridmailKey in $HybridmailCall['parameters'].Keys) {
                    $HybridmailArguments[$HybridmailKey] = ConvertTo-HybridmailArgument -Value $HybridmailCall['parameters'][$HybridmailKey]
                }
                $HybridmailCall['arguments'] = $HybridmailArguments
            }
        }
        catch {
            $HybridmailFailure = New-HybridmailFailure -Type 'BadRequest' -Message ('call ' + $HybridmailCall['id'] + ': ' + $_.Exception.Message)
        }
    }

    # 2. The Exchange cmdlets, once, only when a call needs them.
    if ($null -eq $HybridmailFailure) {
        $HybridmailNeedsExchange = $false
        foreach ($HybridmailCall in $HybridmailPlan['calls']) {
            if ($SessionFreeCmdlets -cnotcontains $HybridmailCall['cmdlet']) {
                $HybridmailNeedsExchange = $true
            }
        }
        if ($HybridmailNeedsExchange -and $HybridmailPlan['load'] -cne 'none') {
            try {
                $HybridmailRunnerInfo['load'] = . Import-HybridmailExchange -LoadMode $HybridmailPlan['load']
            }
            catch {
                $HybridmailFailure = New-HybridmailFailure -Type 'SessionLoadFailed' -Message $_.Exception.Message
            }
        }
    }

    # 3. The calls, in order. The first failed mutation or failed guard aborts the batch: later
    #    mutations are skipped, later Get- calls (verification reads) still run.
    if ($null -eq $HybridmailFailure) {
        $HybridmailAborted = $false
        foreach ($HybridmailCall in $HybridmailPlan['calls']) {
            if ($HybridmailAborted -and $HybridmailCall['mutation']) {
                $HybridmailResults.Add([ordered]@{ id = $HybridmailCall['id']; ok = $false; skipped = $true })
                continue
            }
            try {
                $HybridmailResult = Invoke-HybridmailCall -Call $HybridmailCall
            }
            catch {
                # the call ran but its output could not be converted: report it as the call's error
                $HybridmailResult = [ordered]@{ id = $HybridmailCall['id']; ok = $false; error = (ConvertTo-HybridmailError -ErrorRecord $_) }
            }
            $HybridmailResults.Add($HybridmailResult)
            if ($HybridmailCall['mutation'] -and -not $HybridmailResult['ok']) {
                $HybridmailAborted = $true
            }
            if ($null -ne $HybridmailCall['expect'] -and (-not $HybridmailResult['ok'] -or $HybridmailResult.Contains('guard_failed'))) {
                $HybridmailAborted = $true
            }
        }
    }
}
catch {
    # Only a defect in this runner gets here; still answer with one result line.
    $HybridmailFailure = New-HybridmailFailure -Type 'RunnerFailed' -Message $_.Exception.Message
}

# 4. The one result line.
$HybridmailRunnerInfo['elapsed_ms'] = [long]$HybridmailClock.ElapsedMilliseconds
$HybridmailResponse = [ordered]@{
    version = $HybridmailWireVersion
    host    = $env:COMPUTERNAME
    runner  = $HybridmailRunnerInfo
}
if ($null -eq $HybridmailFailure) {
    $HybridmailResponse['calls'] = $HybridmailResults.ToArray()
}
else {
    $HybridmailResponse['error'] = $HybridmailFailure
    $HybridmailResponse['calls'] = @()
}
$HybridmailJson = ConvertTo-Json -InputObject $HybridmailResponse -Depth 10 -Compress
$HybridmailPayload = [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($HybridmailJson))
Write-Output -InputObject ($HybridmailResultPrefix + $HybridmailPayload)
exit 0
